//! `omp-discord mcp`: the Discord tools as an MCP server on stdio, for OMP's
//! own MCP support and any other MCP client.
//!
//! A thin adapter: the tools and their schemas are `crates/core`'s
//! ([`schema::mcp_tools`]), each call becomes a socket request with
//! [`tools::tool_request`] and its answer the text the model reads with
//! [`tools::tool_answer`]. Every call goes through the one running sidecar
//! (started when none answers), so there is never a second gateway
//! connection or a second IDENTIFY. stdout carries only the protocol; logs go
//! to stderr.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use omp_discord_core::format::project_name;
use omp_discord_core::{schema, tools};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, InitializeResult,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler, ServiceExt};

use crate::client::Link;

const INSTRUCTIONS: &str = "Discord tools served by omp-discord through its one bot connection. Calls without a \
                            channelId use this client's own thread in the bridge's home channel. Secrets are \
                            redacted and mentions never ping.";

/// The MCP server: core's tools over a [`Link`] to the sidecar.
pub struct DiscordTools {
    link: Arc<Link>,
    cwd: String,
    tools: Vec<Tool>,
}

impl DiscordTools {
    /// Serves core's MCP tools through `link`; `cwd` names this client's session and project.
    pub fn new(link: Arc<Link>, cwd: String) -> Self {
        let tools = schema::mcp_tools()
            .into_iter()
            .map(|tool| {
                let schema = match tool.parameters {
                    serde_json::Value::Object(schema) => schema,
                    other => unreachable!("core's tool schemas are JSON objects, not {other}"),
                };
                Tool::new(tool.name, tool.description, schema).with_title(tool.label)
            })
            .collect();
        Self { link, cwd, tools }
    }

    /// One tool call: core's request, the sidecar's answer, core's words.
    async fn call(&self, name: &str, arguments: serde_json::Value, client: &str) -> tools::ToolText {
        let session = tools::mcp_session(client, &self.cwd);
        // Unique across restarts: a question is re-asked only for the same call.
        let call_id = self.link.fresh_id();
        let frame = match tools::tool_request(name, &arguments, &session, &call_id, &project_name(&self.cwd)) {
            Ok(frame) => frame,
            Err(err) => return tools::ToolText { text: err.0, is_error: true },
        };
        let wait = Duration::from_secs(tools::answer_wait_secs(&frame));
        match self.link.request(frame, wait).await {
            Ok(answer) => tools::tool_answer(name, &answer),
            Err(err) => {
                tools::ToolText { text: format!("{name} failed: Discord is unavailable: {err}"), is_error: true }
            }
        }
    }
}

impl ServerHandler for DiscordTools {
    fn get_info(&self) -> ServerConfig {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("omp-discord", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.clone()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.iter().find(|tool| tool.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.as_ref();
        if self.get_tool(name).is_none() {
            return Err(ErrorData::invalid_params(format!("unknown tool {name}"), None));
        }
        let arguments = request.arguments.map_or(serde_json::Value::Null, serde_json::Value::Object);
        let client = context.client_info().map(|info| info.name).unwrap_or_default();
        let answer = tokio::select! {
            // `notifications/cancelled`: stop waiting (a question stays posted in Discord).
            () = context.ct.cancelled() => {
                tracing::info!(tool = name, "call cancelled by the client");
                tools::ToolText { text: format!("{name} was cancelled"), is_error: true }
            }
            answer = self.call(name, arguments, &client) => answer,
        };
        let content = vec![ContentBlock::text(answer.text)];
        let result = if answer.is_error { CallToolResult::error(content) } else { CallToolResult::success(content) };
        Ok(result.into())
    }
}

/// Runs the MCP server on stdin/stdout until the client closes it.
pub async fn run() -> anyhow::Result<ExitCode> {
    let socket = crate::config::default_socket_path()?;
    let cwd = std::env::current_dir().context("cannot read the working directory")?.display().to_string();
    let link = Arc::new(Link::new(
        socket,
        concat!("mcp/", env!("CARGO_PKG_VERSION")).to_owned(),
        std::env::current_exe().ok(),
    ));
    // Reach (or start) the sidecar now, so the first call does not wait for it.
    let warm = link.clone();
    tokio::spawn(async move {
        if let Err(err) = warm.connect().await {
            tracing::warn!("{err}");
        }
    });
    let service = DiscordTools::new(link, cwd)
        .serve(rmcp::transport::stdio_pipes())
        .await
        .context("the MCP client did not complete the handshake")?;
    service.waiting().await.context("the MCP server stopped unexpectedly")?;
    Ok(ExitCode::SUCCESS)
}
