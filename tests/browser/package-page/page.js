// A page a product team would write on @palaver/client, for tests/sdk_browser.rs.
// Query parameters: server (the Palaver server's URL), room, and how to sign in:
//   mode=token    getToken() from this page's own backend (`/token`, which mints tokens
//                 with the server's secret for `user`);
//   mode=renewing the first token fetched by the page, then onTokenExpired() renewals;
//   mode=password username and password (the server allows this page's origin);
//   mode=failing  a getToken() whose backend keeps failing (ends `unauthorized`).
import { PalaverClient } from "@palaver/client";

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const status = $("status");
const room = params.get("room");
let tokens = 0;

function setState(state, text) {
  status.dataset.state = state;
  status.textContent = text ?? state;
}

async function getToken() {
  tokens += 1;
  $("tokens").dataset.count = String(tokens);
  const answer = await fetch(`/token?user=${encodeURIComponent(params.get("user"))}`);
  if (!answer.ok) throw new Error(`the backend answered ${answer.status}`);
  return answer.text();
}

async function failingToken() {
  tokens += 1;
  $("tokens").dataset.count = String(tokens);
  throw new Error("the backend is down");
}

async function options() {
  const common = {
    url: params.get("server"),
    onStateChange: (state, error) => setState(state, error ? `${state}: ${error.message}` : state),
  };
  switch (params.get("mode")) {
    case "token":
      return { ...common, getToken };
    case "renewing":
      return { ...common, token: await getToken(), onTokenExpired: getToken };
    case "password":
      return { ...common, username: params.get("username"), password: params.get("password") };
    default:
      return { ...common, getToken: failingToken, maxTokenFailures: 3 };
  }
}

async function show(client, message) {
  if (document.querySelector(`#messages li[data-seq="${message.seq}"]`)) return;
  const item = document.createElement("li");
  item.dataset.seq = String(message.seq);
  item.dataset.kind = message.kind;
  item.textContent = `${message.sender}: ${message.text}`;
  $("messages").append(item);
  client.markRead(message.room, message.seq);
  if (message.kind === "image" && message.file) {
    const bytes = await client.download(message.file.file_id);
    const image = document.createElement("img");
    image.dataset.fileId = message.file.file_id;
    image.alt = message.file.name;
    image.src = URL.createObjectURL(new Blob([bytes], { type: message.file.content_type }));
    item.append(image);
  }
}

async function main() {
  setState("connecting");
  let client;
  try {
    client = await PalaverClient.connect(await options());
  } catch (error) {
    setState(error.code === "unauthorized" ? "unauthorized" : "failed", `${error.code}: ${error.message}`);
    return;
  }
  setState(client.state);
  // For the driver's calls of the account and report methods.
  window.palaver = client;
  client.on("report", (event) => {
    const item = document.createElement("li");
    item.dataset.reportId = event.report.report_id;
    item.textContent = `report of #${event.report.seq}: ${event.report.reason ?? ""}`;
    $("reports").append(item);
  });
  client.on("message", (event) => show(client, event.message).catch((e) => ($("error").textContent = e.message)));
  await client.join(room, { since: 0 });
  status.dataset.joined = "true";
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("text").value;
    $("text").value = "";
    client.send(room, text).catch((e) => ($("error").textContent = `${e.code}: ${e.message}`));
  });
  $("file").addEventListener("change", () => {
    const file = $("file").files[0];
    client.sendFile(room, file, { caption: "a picture" }).catch((e) => ($("error").textContent = `${e.code}: ${e.message}`));
  });
}

main().catch((e) => ($("error").textContent = String(e.stack ?? e)));
