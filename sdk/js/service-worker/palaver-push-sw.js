// Palaver's Web Push service worker: shows each push from a Palaver server as a
// notification, one per room, and tells the app's open windows.
//
// Serve this file from your app's origin (a service worker's script must be) and register
// it; the page then subscribes with the server's VAPID key and hands the subscription to
// the server (docs/SDK.md, "Web Push"). Options travel in the script URL's query:
//   navigator.serviceWorker.register("/palaver-push-sw.js?open=/chat/%7Broom%7D&icon=/icon.png")
//   open  where a click on a notification leads when no window of the app is open;
//         `{room}` and `{seq}` are replaced (default: the registration's scope)
//   icon  the notification's icon URL (default: none)
//
// A push is the JSON object of docs/PROTOCOL.md ("What a push carries"): `room`, `seq`,
// `sender`, `sender_name`, `room_name` (absent for a direct room), `mention`, and
// `preview` only when the operator turned previews on. Notifications are tagged
// `palaver:<room>`, so a room's newest message replaces its older notification, as the
// push service's `Topic` keeps only a room's newest undelivered push.
//
// Messages to windows (`navigator.serviceWorker.addEventListener("message", …)`):
//   {type: "palaver.push", push, notification: {title, body, tag}}  a push was shown
//   {type: "palaver.notificationclick", push}  a notification was clicked (the window
//                                               is focused first)
//   {type: "palaver.pushsubscriptionchange"}  the browser replaced the subscription: the
//                                             page subscribes again and calls pushSubscribe

const options = new URL(self.location.href).searchParams;

/** The notification a push is shown as. */
function notificationFor(push) {
  const room = typeof push.room === "string" ? push.room : null;
  const sender = typeof push.sender_name === "string" && push.sender_name ? push.sender_name : "Someone";
  const roomName = typeof push.room_name === "string" && push.room_name ? push.room_name : null;
  const preview = typeof push.preview === "string" && push.preview ? push.preview : null;
  let body;
  if (preview !== null) {
    body = roomName === null ? preview : `${sender}: ${preview}`;
  } else if (push.mention === true) {
    body = `${sender} mentioned you`;
  } else {
    body = `New message from ${sender}`;
  }
  return {
    title: roomName ?? sender,
    body,
    tag: room === null ? "palaver" : `palaver:${room}`,
  };
}

/** The push's JSON, or null when the data is missing or not a push. */
function readPush(data) {
  if (!data) return null;
  try {
    const push = data.json();
    return push !== null && typeof push === "object" && typeof push.room === "string" ? push : null;
  } catch {
    return null;
  }
}

async function windows() {
  return self.clients.matchAll({ type: "window", includeUncontrolled: true });
}

async function show(push) {
  // A push the worker cannot read still shows something: a push with userVisibleOnly
  // must, and it still means a message is waiting.
  const notification = push === null ? { title: "New message", body: "", tag: "palaver" } : notificationFor(push);
  const shown = {
    body: notification.body,
    tag: notification.tag,
    // A newer message of the room replaces the notification and alerts again.
    renotify: true,
    data: push,
  };
  const icon = options.get("icon");
  if (icon) shown.icon = icon;
  await self.registration.showNotification(notification.title, shown);
  for (const client of await windows()) {
    client.postMessage({ type: "palaver.push", push, notification });
  }
}

self.addEventListener("install", () => {
  // A new version of this worker takes over at once: it keeps no state of its own.
  self.skipWaiting();
});

self.addEventListener("activate", (event) => {
  event.waitUntil(self.clients.claim());
});

self.addEventListener("push", (event) => {
  event.waitUntil(show(readPush(event.data)));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const push = event.notification.data;
  event.waitUntil(
    (async () => {
      const open = await windows();
      if (open.length > 0) {
        const client = open.find((c) => c.focused) ?? open[0];
        await client.focus();
        client.postMessage({ type: "palaver.notificationclick", push });
        return;
      }
      let target = options.get("open") ?? self.registration.scope;
      if (push) {
        target = target
          .replaceAll("{room}", encodeURIComponent(push.room))
          .replaceAll("{seq}", encodeURIComponent(String(push.seq ?? "")));
      }
      await self.clients.openWindow(new URL(target, self.registration.scope).href);
    })(),
  );
});

self.addEventListener("pushsubscriptionchange", (event) => {
  event.waitUntil(
    (async () => {
      for (const client of await windows()) client.postMessage({ type: "palaver.pushsubscriptionchange" });
    })(),
  );
});
