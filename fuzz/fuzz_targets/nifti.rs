#![no_main]
//! Any bytes given to the nifti reader give a value or an error, never a panic, and an error
//! message is a single line.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match segloss_io::nifti_from_bytes(data) {
        Ok(v) => {
            // Exercise the conversions the CLI uses.
            let _ = v.data.to_f32();
            let _ = v.to_labels();
        }
        Err(e) => assert!(!e.to_string().contains('\n')),
    }
});
