//! Signals and a closed standard output: what ends a command from outside, ended as a shell
//! expects (exit 130 / 143 / 141) after the running command's cleanup.

/// A closed standard output (`dbbackup ls latest | head -2`) ends the command quietly, as a
/// process killed by SIGPIPE would (status 141), after the same cleanup as an interruption
/// (locks removed), instead of a panic. SIGPIPE itself stays ignored so that a child that
/// dies (pg_restore) gives an error, not a silent death.
pub fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let p = info.payload();
        let msg = p
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| p.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            dbbackup::interrupt::run_hooks();
            std::process::exit(128 + libc::SIGPIPE);
        }
        default(info);
    }));
}

/// The status the interrupted process exits with (130 / 143), once a signal arrived.
pub static SIGNAL_STATUS: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// On SIGINT or SIGTERM: undo what the running command registered (partial files, its lock,
/// child commands), then exit 130 / 143 as shells do.
pub fn watch_signals(rt: tokio::runtime::Handle) {
    std::thread::spawn(move || {
        use tokio::signal::unix::{signal, SignalKind};
        let code = rt.block_on(async {
            let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
                return None;
            };
            tokio::select! {
                _ = int.recv() => Some(130),
                _ = term.recv() => Some(143),
            }
        });
        if let Some(code) = code {
            SIGNAL_STATUS.store(code, std::sync::atomic::Ordering::SeqCst);
            eprintln!("dbbackup: interrupted; cleaning up");
            dbbackup::interrupt::run_hooks();
            std::process::exit(i32::from(code));
        }
    });
}
