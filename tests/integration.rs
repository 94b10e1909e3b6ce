//! The one integration-test binary (ripgrep style): every test module is
//! declared here and shares `support`.

mod differential;
mod faults;
mod load;
mod support;
