//! The one integration-test binary (ripgrep style): every test module is
//! declared here and shares `support`.

mod accounting;
mod accounting_wire;
mod bounds;
mod cli;
mod deploy;
mod differential;
mod esmtp;
mod extensions;
mod faults;
mod load;
mod metrics;
mod properties;
mod protocol;
mod report_tool;
mod scale;
mod secure;
mod slo;
mod support;
mod survive;
mod workloads;
