//! `--device flex|wgpu|cuda`, shared by `loss`, `bench`, `train` and `compare`.

use burn::tensor::Device;
use clap::ValueEnum;

use crate::error::CliError;

/// The burn backend a command runs on.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub enum DeviceArg {
    /// burn's Flex backend: pure-Rust CPU, with segloss's fused loss kernels.
    #[default]
    #[value(alias = "cpu")]
    Flex,
    /// burn's wgpu backend (Vulkan, Metal, DX12; needs the `wgpu` cargo feature).
    Wgpu,
    /// burn's CUDA backend (needs the `cuda` cargo feature).
    Cuda,
}

impl std::fmt::Display for DeviceArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeviceArg::Flex => "flex",
            DeviceArg::Wgpu => "wgpu",
            DeviceArg::Cuda => "cuda",
        })
    }
}

impl DeviceArg {
    /// The device (without autodiff), or an error naming the cargo feature this binary was
    /// built without (exit code 2).
    pub fn device(self) -> Result<Device, CliError> {
        match self {
            DeviceArg::Flex => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            DeviceArg::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(feature = "cuda")]
            DeviceArg::Cuda => Ok(Device::cuda(burn::tensor::DeviceIndex::Default)),
            #[allow(unreachable_patterns)] // with both GPU features on
            other => Err(CliError::input(format!(
                "--device {other}: this segloss was built without the '{other}' cargo feature; \
                 rebuild with `--features {other}` (e.g. `cargo build --release -p segloss-cli \
                 --features {other}`)"
            ))),
        }
    }
}
