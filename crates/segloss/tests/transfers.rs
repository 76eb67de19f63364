//! Host ↔ device transfers per loss call on the composed path, the path every backend but the
//! CPU kernels takes (`src/transfer.rs`): the value checks read scalars, never a tensor; the
//! boundary losses copy the target (and, where they read it, the prediction) once and upload one
//! map; nothing else moves. A change that adds a transfer fails here with the loss's name.
//!
//! Counted on Flex with the fused kernels off, per thread (`segloss::transfers`), over one
//! forward and one backward.

use burn::tensor::{Device, Distribution, Int, Tensor};
use segloss::{transfers, with_fused_kernels, LossReduction, LossSpec, Target, Transfers};

const N: usize = 2;
const C: usize = 3;
const H: usize = 8;
const W: usize = 8;

/// The transfers of one forward + backward of `spec`.
fn call(spec: &str, target: &Target, channels: usize) -> Transfers {
    let device = Device::flex().autodiff();
    let x = Tensor::<4>::random([N, channels, H, W], Distribution::Normal(0.0, 1.0), &device)
        .require_grad();
    let loss = LossSpec::parse(spec).unwrap().build().unwrap();
    with_fused_kernels(false, || {
        let before = transfers();
        let v = loss
            .try_forward(x.clone(), target.clone(), None, LossReduction::Mean)
            .unwrap_or_else(|e| panic!("{spec}: {e}"));
        let grads = v.values.backward();
        let after = transfers();
        assert!(x.grad(&grads).is_some(), "{spec}: a gradient");
        after - before
    })
}

fn mask(device: &Device) -> Target {
    let m = Tensor::<4>::random([N, 1, H, W], Distribution::Uniform(0.0, 1.0), device)
        .greater_elem(0.6)
        .float();
    Target::from(m)
}

fn labels(device: &Device) -> Target {
    let l = Tensor::<3, Int>::random([N, H, W], Distribution::Uniform(0.0, C as f64), device);
    Target::from(l)
}

/// `(reads, values read, uploads, values uploaded)` per call, the table the module documents.
#[test]
fn each_loss_call_moves_only_scalars_and_its_maps() {
    let device = Device::flex().autodiff();
    let (m, l) = (mask(&device), labels(&device));
    let px = N * H * W;
    // Checks: finite logits (1 value); a mask's [all finite, min, max] (3) or the labels'
    // [min, max] (2); the finite loss (1).
    let labels_checks = Transfers {
        reads: 3,
        read_values: 4,
        uploads: 0,
        uploaded_values: 0,
    };
    let mask_checks = Transfers {
        read_values: 5,
        ..labels_checks
    };
    let table: Vec<(&str, &Target, usize, Transfers)> = vec![
        ("bce", &m, 1, mask_checks),
        ("focal", &m, 1, mask_checks),
        ("dice", &m, 1, mask_checks),
        ("tversky", &m, 1, mask_checks),
        ("generalized_dice", &m, 1, mask_checks),
        ("lovasz", &m, 1, mask_checks),
        ("ce", &l, C, labels_checks),
        ("dice", &l, C, labels_checks),
        ("focal(activation=softmax)", &l, C, labels_checks),
        ("generalized_dice", &l, C, labels_checks),
        ("dice + ce", &l, C, {
            // Each term checks its input; the sum is checked once.
            Transfers {
                reads: 5,
                read_values: 7,
                ..labels_checks
            }
        }),
        // The boundary losses: one copy of the target to the host, one map back.
        (
            "boundary",
            &m,
            1,
            Transfers {
                reads: 4,
                read_values: 5 + px,
                uploads: 1,
                uploaded_values: px,
            },
        ),
        // The target's and the prediction's distance fields: two copies, two fields back.
        (
            "hausdorff_dt",
            &m,
            1,
            Transfers {
                reads: 5,
                read_values: 5 + 2 * px,
                uploads: 2,
                uploaded_values: 2 * px,
            },
        ),
    ];
    let mut report = Vec::new();
    for (spec, target, channels, want) in &table {
        let got = call(spec, target, *channels);
        if got != *want {
            report.push(format!("{spec}: got {got:?}, want {want:?}"));
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
}
