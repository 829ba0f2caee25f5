//! The network as a whole: its options ([`config`]), where each parameter
//! lives in the flat vector ([`layout`]), the first values of the parameters
//! ([`init`]), and the forward / backward / curvature pass written once over
//! the layers ([`pass`]).

pub(crate) mod aligned;
pub(crate) mod config;
mod init;
pub(crate) mod layout;
pub(crate) mod pass;

pub(crate) use config::*;
pub use config::{
    Activation, C3Connections, Config, Init, Loss, Output, Pooling, Prototypes, MAX_CLASSES,
    TABLE_I,
};
pub use layout::{Layout, TensorSpec};
pub(crate) use pass::upper_transposed;
pub(crate) use pass::{
    wide_lanes, CurvatureChunk, Forward, LowerBackward, LowerForward, TrainChunk, UpperTrain,
    UpperWeights, Workspace,
};
