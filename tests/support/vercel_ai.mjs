// Drive the Vercel AI SDK against clinvk: one call described by a JSON argument, one JSON
// line of results on stdout. Run by tests/support/node_sdks.py with CLINVK_NODE_SDK_DIR set
// to the folder scripts/install-node-sdks.sh installed the pinned packages into.
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

const dir = process.env.CLINVK_NODE_SDK_DIR;
const require = createRequire(path.join(dir, "package.json"));
const load = (name) => import(pathToFileURL(require.resolve(name)).href);
const { generateText, streamText, stepCountIs, tool } = await load("ai");
const { z } = await load("zod");
const { createOpenAI } = await load("@ai-sdk/openai");
const { createAnthropic } = await load("@ai-sdk/anthropic");

const call = JSON.parse(process.argv[2]);

function model() {
  if (call.provider === "anthropic") {
    return createAnthropic({ baseURL: `${call.baseURL}/anthropic/v1`, apiKey: "not-needed" })(call.model);
  }
  const openai = createOpenAI({ baseURL: `${call.baseURL}/openai/v1`, apiKey: "not-needed" });
  return call.provider === "openai.chat" ? openai.chat(call.model) : openai(call.model);
}

function describe(error) {
  return {
    name: error?.name ?? String(error),
    message: error?.message,
    statusCode: error?.statusCode ?? error?.lastError?.statusCode,
    responseBody: error?.responseBody ?? error?.lastError?.responseBody,
  };
}

// `call.tools`: {name: {description, parameters: {field: "string"}, result}} become tools
// with a zod schema whose `execute` records its input and returns `result`.
function tools(out) {
  const made = {};
  for (const [name, spec] of Object.entries(call.tools ?? {})) {
    const shape = Object.fromEntries(Object.keys(spec.parameters).map((k) => [k, z.string()]));
    made[name] = tool({
      description: spec.description,
      inputSchema: z.object(shape),
      execute: async (input) => {
        out.executed.push({ name, input });
        return spec.result;
      },
    });
  }
  return made;
}

function steps(list) {
  return list.map((step) => ({
    text: step.text,
    finishReason: step.finishReason,
    usage: step.usage,
    toolCalls: step.toolCalls.map((c) => ({ toolCallId: c.toolCallId, toolName: c.toolName, input: c.input })),
    toolResults: step.toolResults.map((r) => ({ toolCallId: r.toolCallId, output: r.output })),
  }));
}

async function once(args) {
  const out = {};
  if (call.tools !== undefined) {
    out.executed = [];
    args = { ...args, tools: tools(out), stopWhen: stepCountIs(call.maxSteps ?? 5) };
  }
  try {
    if (call.mode === "stream") {
      const result = streamText({ ...args, onError: ({ error }) => { out.error = describe(error); } });
      out.chunks = [];
      for await (const part of result.fullStream) {
        if (part.type === "text-delta") out.chunks.push(part.text);
        if (part.type === "error") out.error = describe(part.error);
        // The order of the tool and step parts (a multi-step stream's shape).
        if (["tool-call", "tool-result", "finish-step"].includes(part.type)) {
          (out.parts ??= []).push(part.type);
        }
      }
      out.text = out.chunks.join("");
      if (!out.error) {
        out.finishReason = await result.finishReason;
        out.usage = await result.usage;
        out.response = await result.response;
        out.providerMetadata = await result.providerMetadata;
        out.steps = steps(await result.steps);
      }
    } else {
      const result = await generateText(args);
      out.text = result.text;
      out.finishReason = result.finishReason;
      out.usage = result.usage;
      out.response = result.response;
      out.providerMetadata = result.providerMetadata;
      out.steps = steps(result.steps);
    }
  } catch (error) {
    out.error = describe(error);
  }
  return out;
}

const args = { model: model(), maxRetries: 0 };
for (const key of ["prompt", "messages", "system", "providerOptions"]) {
  if (call[key] !== undefined) args[key] = call[key];
}
const out = await once(args);
// A multi-step conversation as the SDK's docs write it: the first answer's response.messages
// appended to the list, then the next user turn.
if (call.followUp !== undefined && !out.error) {
  const messages = [
    ...(args.messages ?? [{ role: "user", content: args.prompt }]),
    ...out.response.messages,
    { role: "user", content: call.followUp },
  ];
  const { prompt, ...rest } = args;
  out.followUp = await once({ ...rest, messages });
}
process.stdout.write(JSON.stringify(out) + "\n");
