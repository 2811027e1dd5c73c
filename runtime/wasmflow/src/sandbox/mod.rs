//! The sandbox: the engine (compile, cache, instantiate), compiled workflow
//! modules, the WIT bindings, the host side of the imports, and the driver
//! that runs the guest's event loop across the boundary.

pub mod bindings;
pub mod driver;
pub mod engine;
pub mod function_cache;
pub mod host;
pub mod module;
