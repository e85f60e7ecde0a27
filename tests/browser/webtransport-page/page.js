// A chat page on @palaver/client for tests/sdk_webtransport.rs. Query parameters:
// server (the Palaver server's URL), room, username, password, and optionally
// webTransportUrl and webTransportTimeoutMs (to point WebTransport somewhere that never
// answers, as a network that blocks UDP would). The driver calls window.say(text).
import { PalaverClient } from "@palaver/client";

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const room = params.get("room");

function setState(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text ?? state;
}

function show(message) {
  if (document.querySelector(`#messages li[data-seq="${message.seq}"]`)) return;
  const item = document.createElement("li");
  item.dataset.seq = String(message.seq);
  item.textContent = message.text;
  $("messages").append(item);
}

async function main() {
  setState("connecting");
  const options = {
    url: params.get("server"),
    username: params.get("username"),
    password: params.get("password"),
    onStateChange: (state, error) => setState(state, error ? `${state}: ${error.message}` : state),
  };
  if (params.has("webTransportUrl")) options.webTransportUrl = params.get("webTransportUrl");
  if (params.has("webTransportTimeoutMs")) options.webTransportTimeoutMs = Number(params.get("webTransportTimeoutMs"));
  let client;
  try {
    client = await PalaverClient.connect(options);
  } catch (error) {
    setState("failed", `${error.code}: ${error.message}`);
    return;
  }
  $("transport").textContent = client.transport;
  client.on("connected", () => { $("transport").textContent = client.transport; });
  client.on("message", (event) => show(event.message));
  const joined = await client.join(room, { since: 0 });
  for (const message of joined.messages ?? []) show(message);
  window.say = async (text) => (await client.send(room, text)).seq;
  setState("ready");
}

main().catch((error) => {
  $("error").textContent = String(error);
  setState("failed", String(error));
});
