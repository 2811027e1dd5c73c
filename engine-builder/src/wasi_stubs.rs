//! What each `wasi_snapshot_preview1` import turns into.
//!
//! A stub must leave the caller in a state it handles: where wasi-libc or
//! Rust std would abort on an error (environment and argument sizes, random
//! bytes for hash seeds), the stub succeeds and writes every out-parameter;
//! elsewhere it returns an errno, so the caller reads no out-parameter.
//! Unknown imports trap, loudly, when called.

/// Width of an out-parameter the stub writes a zero to.
#[derive(Clone, Copy)]
pub enum Out {
    I32,
    I64,
}

pub struct Stub {
    /// (parameter index, width) of out-parameters set to zero.
    pub zero_out_params: &'static [(usize, Out)],
    /// (pointer parameter, length parameter) of a buffer to zero-fill.
    pub zero_fill: Option<(usize, usize)>,
    /// The errno returned; `None` traps instead.
    pub errno: Option<i32>,
}

const SUCCESS: i32 = 0;
const EBADF: i32 = 8;
const ENOSYS: i32 = 52;

pub fn stub_for(name: &str) -> Stub {
    let stub = |zero_out_params, zero_fill, errno| Stub {
        zero_out_params,
        zero_fill,
        errno,
    };
    match name {
        // (count *, buffer size *): no environment, no arguments.
        "environ_sizes_get" | "args_sizes_get" => {
            stub(&[(0, Out::I32), (1, Out::I32)], None, Some(SUCCESS))
        }
        "environ_get" | "args_get" => stub(&[], None, Some(SUCCESS)),
        // (id, precision, time *): the epoch. The prelude makes Date.now()
        // and friends throw before a script can observe it.
        "clock_time_get" => stub(&[(2, Out::I64)], None, Some(SUCCESS)),
        // (buf, len): zeros. Only seeds hash tables; Math.random throws.
        "random_get" => stub(&[], Some((0, 1)), Some(SUCCESS)),
        // No file descriptors exist: not even stdio.
        "fd_close"
        | "fd_fdstat_get"
        | "fd_prestat_get"
        | "fd_prestat_dir_name"
        | "fd_read"
        | "fd_seek"
        | "fd_write"
        | "fd_filestat_get"
        | "fd_tell"
        | "fd_sync" => stub(&[], None, Some(EBADF)),
        "sched_yield" => stub(&[], None, Some(SUCCESS)),
        "poll_oneoff" => stub(&[], None, Some(ENOSYS)),
        // proc_exit and anything unforeseen.
        _ => stub(&[], None, None),
    }
}
