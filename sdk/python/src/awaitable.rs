//! Rust futures as asyncio awaitables: each call runs on the package's tokio runtime (the
//! one the SDK's drivers run on) and completes an `asyncio.Future` of the caller's loop.
//!
//! Completing a future needs the interpreter, from a thread that is not the loop's: the
//! result is handed over with `loop.call_soon_threadsafe`. The interpreter must not be
//! entered that way once it is exiting (a thread that attaches while `Py_Finalize` runs
//! aborts the process: "PyGILState_Release: thread state must be current"), so the module
//! registers an `atexit` hook that stops new completions and waits for those under way.
//! Cancelling the asyncio future (a timeout, a cancelled task) aborts the Rust work.

use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pyo3::IntoPyObjectExt as _;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// The runtime every call and every client's driver runs on (built on first use).
static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
/// Completions inside the interpreter right now.
static COMPLETING: AtomicUsize = AtomicUsize::new(0);
/// The interpreter is exiting: complete nothing more.
static EXITING: AtomicBool = AtomicBool::new(false);
/// How long the exit hook waits for completions under way.
const EXIT_WAIT: Duration = Duration::from_secs(2);

fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let built = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("palaver-sdk")
        .build()
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start the SDK's runtime: {e}")))?;
    Ok(RUNTIME.get_or_init(|| built))
}

/// An asyncio future of the running loop that `work`'s result completes.
pub(crate) fn awaitable<'py, T>(
    py: Python<'py>,
    work: impl Future<Output = PyResult<T>> + Send + 'static,
) -> PyResult<Bound<'py, PyAny>>
where
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
    let future = event_loop.call_method0("create_future")?;
    let (loop_ref, future_ref) = (event_loop.unbind(), future.clone().unbind());
    let task = runtime()?.spawn(async move {
        let result = work.await;
        // Off the async workers: attaching may wait for the interpreter.
        let _ = tokio::task::spawn_blocking(move || complete(loop_ref, future_ref, result)).await;
    });
    future.call_method1("add_done_callback", (AbortOnCancel { task: task.abort_handle() },))?;
    Ok(future)
}

/// Hands `result` to the future's loop, unless the interpreter is exiting.
fn complete<T>(event_loop: Py<PyAny>, future: Py<PyAny>, result: PyResult<T>)
where
    T: for<'a> IntoPyObject<'a>,
{
    COMPLETING.fetch_add(1, Ordering::SeqCst);
    if !EXITING.load(Ordering::SeqCst) {
        Python::attach(|py| {
            let outcome = result.and_then(|value| value.into_py_any(py));
            let (value, error) = match outcome {
                Ok(value) => (value, py.None()),
                Err(error) => (py.None(), error.into_value(py).into_any()),
            };
            let handed = py.import("palaver._native").and_then(|module| module.getattr("_settle")).and_then(
                |settle| {
                    event_loop
                        .bind(py)
                        .call_method1("call_soon_threadsafe", (settle, future.bind(py), value, error))
                },
            );
            // A closed loop: nobody waits for this answer any more.
            drop(handed);
            drop((event_loop, future));
        });
    }
    COMPLETING.fetch_sub(1, Ordering::SeqCst);
}

/// Completes `future` on its loop (unless it was cancelled meanwhile).
#[pyfunction]
pub(crate) fn _settle(
    future: &Bound<'_, PyAny>,
    value: Bound<'_, PyAny>,
    error: Bound<'_, PyAny>,
) -> PyResult<()> {
    if future.call_method0("done")?.is_truthy()? {
        return Ok(());
    }
    if error.is_none() {
        future.call_method1("set_result", (value,))?;
    } else {
        future.call_method1("set_exception", (error,))?;
    }
    Ok(())
}

/// The `atexit` hook: no completion enters the interpreter from now on, and those under
/// way are waited for (with the GIL released so they can finish).
#[pyfunction]
pub(crate) fn _quiesce(py: Python<'_>) {
    EXITING.store(true, Ordering::SeqCst);
    py.detach(|| {
        let deadline = Instant::now() + EXIT_WAIT;
        while COMPLETING.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

/// The future's done callback: a cancelled future aborts its Rust work.
#[pyclass(frozen, module = "palaver._native")]
struct AbortOnCancel {
    task: tokio::task::AbortHandle,
}

#[pymethods]
impl AbortOnCancel {
    fn __call__(&self, future: &Bound<'_, PyAny>) -> PyResult<()> {
        if future.call_method0("cancelled")?.is_truthy()? {
            self.task.abort();
        }
        Ok(())
    }
}
