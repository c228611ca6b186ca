//! `lanyard switch`: makes an account the profile's active one (a picker without an argument).

use crate::context::Context;
use crate::exit::CliError;
use crate::render::account_json;
use crate::select::{self, label};

pub async fn run(ctx: &Context, query: Option<&str>) -> Result<(), CliError> {
    let m = ctx.manager()?;
    let (all, active) = m.store().index().snapshot()?;
    let target = match query {
        Some(q) => select::find(&all, q)?.clone(),
        None => crate::picker::pick(&all, active.as_ref())?.clone(),
    };
    m.switch(&target.key).await?;
    ctx.output.print(
        || format!("Now using {}", label(&target)),
        account_json(&target, true),
    )
}
