//! Opening a CUDA device the way a training loop wants it.
//!
//! candle's `Device::new_cuda` leaves two driver defaults that cost host time
//! on every step. frugal changes them, because it allocates thousands of
//! tensors per step on a single stream:
//!
//! * **The memory pool keeps what is freed.** candle allocates through
//!   cudarc with `cuMemAllocAsync` from the device's memory pool. The pool's
//!   release threshold defaults to 0, so at every synchronisation (a step
//!   reads its loss and its gradient norm back) the driver returns all unused
//!   memory to the OS, and the next forward maps gigabytes of activations
//!   again. A threshold of `u64::MAX` keeps that memory in the pool, as
//!   PyTorch's caching allocator does. The cost: memory freed by frugal is
//!   not given back to other processes on the card until frugal exits.
//! * **No CUDA events per allocation.** With event tracking on (cudarc's
//!   default), every allocation creates a read and a write event and every
//!   free destroys them: four driver calls per tensor. The events only order
//!   work across streams, and candle launches everything on one stream, where
//!   cudarc never records or waits on them.
//!
//! `FRUGAL_CUDA_DRIVER_DEFAULTS=1` keeps both defaults, for an A/B run
//! (`bench/gpu.sh` has one row with it).

use candle_core::{Device, Result};

/// `Device::new_cuda(ordinal)`, then the two settings above unless
/// `FRUGAL_CUDA_DRIVER_DEFAULTS=1`. Every failure is candle's or the driver's
/// (without the `cuda` feature, candle's "not compiled with cuda"), so the
/// error is candle's own.
pub fn open_cuda(ordinal: usize) -> Result<Device> {
    let device = Device::new_cuda(ordinal)?;
    #[cfg(feature = "cuda")]
    if !keep_driver_defaults(std::env::var("FRUGAL_CUDA_DRIVER_DEFAULTS").ok().as_deref()) {
        tune(device.as_cuda_device()?)?;
    }
    Ok(device)
}

/// Whether the value of `FRUGAL_CUDA_DRIVER_DEFAULTS` asks to skip the
/// settings (`1` does; unset, empty or anything else does not).
pub fn keep_driver_defaults(value: Option<&str>) -> bool {
    value == Some("1")
}

#[cfg(feature = "cuda")]
fn tune(dev: &candle_core::CudaDevice) -> Result<()> {
    use candle_core::cuda_backend::cudarc::driver::{result, sys};
    use candle_core::cuda_backend::WrapErr;

    // SAFETY: cudarc only records or waits on a tensor's events once a
    // context has more than one stream, and candle's CUDA device (its
    // per-thread stream) never creates a second one; nothing in frugal does.
    unsafe { dev.disable_event_tracking() };
    let stream = dev.cuda_stream();
    let ctx = stream.context();
    if !ctx.has_async_alloc() {
        // cudarc falls back to cuMemAlloc/cuMemFree: there is no pool.
        return Ok(());
    }
    ctx.bind_to_thread().w()?;
    let mut threshold = u64::MAX;
    // SAFETY: the device comes from a live context bound to this thread, and
    // the release threshold attribute is a u64 (cuMemPoolSetAttribute).
    unsafe {
        let pool = result::device::get_mem_pool(ctx.cu_device()).w()?;
        result::mem_pool::set_attribute(
            pool,
            sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
            (&mut threshold as *mut u64).cast(),
        )
        .w()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_keeps_the_driver_defaults() {
        assert!(keep_driver_defaults(Some("1")));
        for other in [None, Some(""), Some("0"), Some("true"), Some("yes")] {
            assert!(!keep_driver_defaults(other), "{other:?}");
        }
    }

    #[test]
    fn without_a_gpu_opening_cuda_is_an_error_not_a_panic() {
        // On a CPU-only build (CI) candle refuses; on a cuda build without a
        // card the driver does. Either way the caller gets an Err.
        if candle_core::utils::cuda_is_available() && Device::new_cuda(0).is_ok() {
            eprintln!("a GPU is present: the error path is not reachable here");
            return;
        }
        assert!(open_cuda(0).is_err());
    }
}
