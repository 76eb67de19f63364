//! Host ↔ device transfers. Every read of tensor values to the host and every upload of host
//! values that segloss makes goes through this module and is counted per thread, so that the
//! number a loss call makes is pinned by tests (`crates/segloss/tests/transfers.rs`): on a GPU
//! each one is a synchronisation, and a whole-tensor copy per step would dominate training.
//!
//! What a loss call moves on the composed path (every backend but the CPU kernels):
//! - the value checks: a few scalars per call, never a copy of a tensor: finite predictions (1),
//!   a mask target's `[all finite, min, max]` (3) or a label map's `[min, max]` (2), the finite
//!   loss (1); with `ignore_index`, the counts of ignored elements;
//! - the boundary losses: one detached copy of the target (or of its labels) to the host and one
//!   map back; `hausdorff_dt` also copies the prediction and uploads its distance field;
//! - nothing else: the region, distribution and Lovász losses stay on the device.
//!
//! On the CPU (burn's Flex) these are memory copies, and the fused kernels read their inputs in
//! place (Lovász sorts on the host there, and the region losses evaluate their formula on the
//! host from a `[N, C, 8]` tensor of sums).

use std::cell::Cell;

use burn::tensor::kind::Basic;
use burn::tensor::{Element, Tensor, TensorData};

/// Counts of the host ↔ device transfers segloss made on the calling thread, since the thread
/// started (see [`transfers`]); subtract two readings to count one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transfers {
    /// Reads of tensor values to the host.
    pub reads: usize,
    /// Values read, over all reads.
    pub read_values: usize,
    /// Uploads of host values (constants, maps, host-computed gradients) to the device.
    pub uploads: usize,
    /// Values uploaded, over all uploads.
    pub uploaded_values: usize,
}

impl std::ops::Sub for Transfers {
    type Output = Transfers;

    fn sub(self, before: Transfers) -> Transfers {
        Transfers {
            reads: self.reads - before.reads,
            read_values: self.read_values - before.read_values,
            uploads: self.uploads - before.uploads,
            uploaded_values: self.uploaded_values - before.uploaded_values,
        }
    }
}

thread_local! {
    static COUNTS: Cell<Transfers> = const {
        Cell::new(Transfers {
            reads: 0,
            read_values: 0,
            uploads: 0,
            uploaded_values: 0,
        })
    };
}

/// The transfers segloss has made on the calling thread so far.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use segloss::{transfers, BceLossConfig, Reduction};
///
/// let device = Device::flex();
/// let logits = Tensor::<4>::from_floats([[[[0.5, -1.0]]]], &device);
/// let mask = Tensor::<4>::from_floats([[[[1.0, 0.0]]]], &device);
/// let before = transfers();
/// let _ = BceLossConfig::new().init().forward(logits, mask, Reduction::Mean);
/// let call = transfers() - before;
/// assert!(call.read_values <= 8, "value checks read scalars only: {call:?}");
/// ```
pub fn transfers() -> Transfers {
    COUNTS.with(Cell::get)
}

fn count(read: usize, uploaded: usize) {
    COUNTS.with(|c| {
        let mut t = c.get();
        if read > 0 {
            t.reads += 1;
            t.read_values += read;
        }
        if uploaded > 0 {
            t.uploads += 1;
            t.uploaded_values += uploaded;
        }
        c.set(t);
    });
}

/// The values of `t`, read to the host.
pub(crate) fn read<const D: usize, K: Basic>(t: Tensor<D, K>) -> TensorData {
    count(t.shape().num_elements(), 0);
    t.into_data()
}

/// The one value of `t`, read to the host.
pub(crate) fn read_scalar<E: Element, const D: usize, K: Basic>(t: Tensor<D, K>) -> E {
    count(1, 0);
    t.into_scalar::<E>()
}

/// Notes an upload of `values` host values to the device (made by the caller).
pub(crate) fn note_upload(values: usize) {
    count(0, values.max(1));
}
