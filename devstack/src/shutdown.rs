//! The signals that stop the stack: the ones every Lanyard server stops on
//! (`lanyard_service::TerminationSignals`: Ctrl-C, and SIGTERM on Unix).

pub use lanyard_service::TerminationSignals as ShutdownSignals;
