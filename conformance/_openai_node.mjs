// Driven by conformance/openai_node.sh, copied beside the pinned `openai` package it imports.
// Against the gateway at G2A_BASE/v1 with the key G2A_KEY: Chat Completions plain, streamed (the
// deltas add up to a non-empty answer) and a function tool the simulator calls (`#sim:tool=shout`,
// argument scripted by `#sim:args`) whose result goes back and gets a text answer; Responses plain
// and streamed. Prints one `ok   …` line per check; any failure exits non-zero.
import OpenAI from "openai";

const MODEL = "grok-4.20-fast";
const client = new OpenAI({ baseURL: process.env.G2A_BASE + "/v1", apiKey: process.env.G2A_KEY, maxRetries: 0 });

function check(cond, what, detail = "") {
  if (!cond) {
    console.error(`${what}: ${JSON.stringify(detail).slice(0, 600)}`);
    process.exit(1);
  }
}

const plain = await client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "Say hello" }] });
check(plain.choices[0].message.content?.trim(), "chat: no plain answer", plain);
check(plain.choices[0].finish_reason === "stop", "chat: finish_reason is not stop", plain.choices[0]);
console.log("ok   openai node (chat completions): plain answer");

const stream = await client.chat.completions.create({
  model: MODEL, stream: true, messages: [{ role: "user", content: "Tell me about kites" }],
});
const deltas = [];
for await (const chunk of stream) {
  const piece = chunk.choices[0]?.delta?.content;
  if (piece) deltas.push(piece);
}
check(deltas.length > 1 && deltas.join("").trim(), "chat: the answer was not streamed", deltas);
console.log("ok   openai node (chat completions): streamed answer");

const tools = [{
  type: "function",
  function: { name: "shout", description: "Shout the text back.",
    parameters: { type: "object", properties: { text: { type: "string" } }, required: ["text"] } },
}];
const messages = [{ role: "user", content: 'Shout it #sim:tool=shout #sim:args={"text":"conformance-ok"}' }];
const called = await client.chat.completions.create({ model: MODEL, messages, tools });
const call = called.choices[0].message.tool_calls?.[0];
check(called.choices[0].finish_reason === "tool_calls" && call?.function.name === "shout", "chat: no tool call",
  called.choices[0]);
const args = JSON.parse(call.function.arguments);
check(args.text === "conformance-ok", "chat: the tool call lost its scripted argument", args);
messages.push(called.choices[0].message, { role: "tool", tool_call_id: call.id, content: args.text.toUpperCase() + "!" });
const answered = await client.chat.completions.create({ model: MODEL, messages, tools });
check(answered.choices[0].finish_reason === "stop" && answered.choices[0].message.content?.trim(),
  "chat: no text answer after the tool result", answered.choices[0]);
console.log("ok   openai node (chat completions): tool call round trip");

const resp = await client.responses.create({ model: MODEL, input: "Say hello" });
check(resp.status === "completed" && resp.output_text.trim(), "responses: no plain answer", resp);
const again = await client.responses.retrieve(resp.id);
check(again.output_text === resp.output_text, "responses: the stored response differs", again);
console.log("ok   openai node (responses): plain answer, stored and retrieved");

const rstream = await client.responses.create({ model: MODEL, input: "Tell me about rivers", stream: true });
let text = "";
let completed = null;
for await (const event of rstream) {
  if (event.type === "response.output_text.delta") text += event.delta;
  if (event.type === "response.completed") completed = event.response;
}
check(completed && text && text === completed.output.at(-1).content[0].text, "responses: the stream is incomplete",
  { text, completed });
console.log("ok   openai node (responses): streamed answer");
