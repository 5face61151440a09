//! What a run carries from start to end: the configuration, the clients of the backends, the
//! cancel flag, the journal's run and the progress reports. Primitives get it as a `Host`.

pub mod hold;
pub mod hooks;
pub mod host;
pub mod local_lock;
pub mod progress;
pub mod unconfirmed;
