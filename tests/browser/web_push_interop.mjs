// Web Push interop for server/tests/web_push_interop.rs: npm's `http_ece` and `web-push`
// packages on the other side of Palaver's RFC 8291 encryption and RFC 8292 VAPID tokens.
// Reads one JSON request on stdin, writes one JSON answer on stdout.
import crypto from "node:crypto";
import ece from "http_ece";
import webpush from "web-push";

const b64u = (buffer) => Buffer.from(buffer).toString("base64url");
const bytes = (text) => Buffer.from(text, "base64url");

/** A P-256 public key (uncompressed point) as a JWK, with the private scalar when given. */
function jwk(publicKey, privateKey) {
  const point = bytes(publicKey);
  const key = { kty: "EC", crv: "P-256", x: b64u(point.subarray(1, 33)), y: b64u(point.subarray(33, 65)) };
  return privateKey ? { ...key, d: privateKey } : key;
}

const request = JSON.parse(await new Promise((resolve) => {
  let text = "";
  process.stdin.on("data", (chunk) => (text += chunk));
  process.stdin.on("end", () => resolve(text));
}));

let answer;
switch (request.op) {
  // A body encrypted elsewhere, read as a browser does.
  case "decrypt": {
    const ua = crypto.createECDH("prime256v1");
    ua.setPrivateKey(bytes(request.ua_private));
    const plaintext = ece.decrypt(bytes(request.body), {
      version: "aes128gcm",
      privateKey: ua,
      authSecret: request.auth,
    });
    answer = { plaintext: plaintext.toString("utf8") };
    break;
  }
  // A payload encrypted the way application servers using web-push do.
  case "encrypt": {
    const made = webpush.encrypt(request.p256dh, request.auth, request.plaintext, "aes128gcm");
    answer = { body: b64u(made.cipherText) };
    break;
  }
  // A VAPID Authorization header as web-push makes it.
  case "vapid_sign": {
    const headers = webpush.getVapidHeaders(
      request.audience, request.subject, request.public_key, request.private_key, "aes128gcm", request.exp,
    );
    answer = { authorization: headers.Authorization };
    break;
  }
  // A VAPID token made elsewhere, checked with node's own ES256.
  case "vapid_verify": {
    const [header, claims, signature] = request.token.split(".");
    const key = crypto.createPublicKey({ key: jwk(request.public_key), format: "jwk" });
    const valid = crypto.verify(
      "sha256", Buffer.from(`${header}.${claims}`), { key, dsaEncoding: "ieee-p1363" }, bytes(signature),
    );
    answer = { valid, header: JSON.parse(bytes(header)), claims: JSON.parse(bytes(claims)) };
    break;
  }
  default:
    throw new Error(`unknown op ${request.op}`);
}
process.stdout.write(JSON.stringify(answer));
