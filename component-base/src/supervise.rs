//! Keeping long-lived tasks alive and their failures visible: a panic inside a spawned
//! task kills only that task, and nobody hears of it when its `JoinHandle` is dropped.
//! Loops that must not die run each unit of work through [`catch_panic`], log what it
//! returns, and go on (after a backoff, so a panic that repeats does not spin).

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;

/// The message a panic carried (`panic!("...")` with a literal or a formatted string).
pub fn panic_message(p: &(dyn Any + Send)) -> &str {
    p.downcast_ref::<&str>()
        .copied()
        .or_else(|| p.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}

/// Runs `f` to completion; a panic inside it comes back as `Err` with its message instead
/// of unwinding further. The default panic hook has already printed it with its location.
///
/// `f` is treated as unwind safe: callers drop or repair whatever state a panic could have
/// left half-changed (locks here recover from poisoning).
pub async fn catch_panic<F: Future>(f: F) -> Result<F::Output, String> {
    AssertUnwindSafe(f)
        .catch_unwind()
        .await
        .map_err(|p| panic_message(p.as_ref()).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_an_error_with_its_message() {
        assert_eq!(catch_panic(async { 7 }).await, Ok(7));
        let n = 3;
        let r = catch_panic(async move {
            if n > 2 {
                panic!("too many: {n}");
            }
        })
        .await;
        assert_eq!(r, Err("too many: 3".to_string()));
        let r = catch_panic(async { std::panic::panic_any(5u8) }).await;
        assert_eq!(r, Err("a panic without a message".to_string()));
    }
}
