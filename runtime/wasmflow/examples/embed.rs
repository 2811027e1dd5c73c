//! Build, load and run a workflow with your own agents: `cargo run -p wasmflow --example embed`
use std::sync::Arc;
use wasmflow::backend::*;
use wasmflow::*;

struct Echo; // agents that shout their prompt back

impl AgentBackend for Echo {
    fn name(&self) -> &str {
        "echo"
    }
    fn run(&self, req: AgentRequest) -> BoxFuture<'static, AgentResult> {
        let output = AgentOutput::Text(req.prompt.to_uppercase());
        let usage = Usage::new(9, 3);
        Box::pin(async move { Ok(AgentReply { output, usage }) })
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let src = "return await parallel(['a', 'b'].map(x => () => agent(`say ${x}`)))";
    let script = Script::from_source("f.js".into(), "f.js".into(), src.into(), Default::default())?;
    let engine = WorkflowEngine::new()?;
    let wasm = build_module(&engine, &script)?; // the bytes `wasmflow build` writes
    let module = WorkflowModule::load(&engine, "f.wasm".as_ref(), &wasm, Default::default())?;
    let (program, config) = (Program::Module(&module), RunConfig::new(Arc::new(Echo)));
    let outcome = run_program(&engine, program, config, EventSink::silent());
    println!("{}", outcome.result?); // ["SAY A","SAY B"]
    Ok(())
}
