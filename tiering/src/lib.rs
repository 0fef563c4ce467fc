//! strata's tiering: which files are cold (policy), finding them (scan),
//! moving them to the data lake and back (lake), and the record of every
//! move (catalog state machine). Work in progress: see issue 3.
#![deny(missing_docs, unreachable_pub)]

pub mod agent;
pub mod bounds;
pub mod catalog;
pub mod lake;
pub mod metrics;
pub mod mover;
pub mod policy;
pub mod raft;
pub mod scan;
pub mod service;
pub mod site_zone;
pub mod trigger;
