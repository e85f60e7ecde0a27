//! Ops from the JSON of their requests, read field by field from a `serde_json::Value`,
//! for the JavaScript package. `Op`'s own `Deserialize` (an internally tagged enum) would
//! bring serde's buffered tagged-enum decoding of every op into the browser's
//! WebAssembly, a ninth of its size; this reads the same JSON into the same values, and
//! refuses what it refuses (unknown and missing fields, wrong types, bad identifiers) —
//! tested against it for every op.

use palaver_protocol::{ClientMsgId, Op, RoomId, UserId};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::Error;

/// The fields of one request, taken one by one; what is left over is refused.
struct Fields {
    op: String,
    map: Map<String, Value>,
}

impl Fields {
    fn invalid(&self, message: impl std::fmt::Display) -> Error {
        Error::Invalid(format!("{}: {message}", self.op))
    }

    /// A field's value; `None` when absent or `null` (as serde reads an `Option`).
    fn take(&mut self, name: &str) -> Option<Value> {
        self.map.remove(name).filter(|v| !v.is_null())
    }

    fn required<T>(&self, name: &str, value: Option<T>) -> Result<T, Error> {
        value.ok_or_else(|| self.invalid(format!("missing field `{name}`")))
    }

    fn opt_string(&mut self, name: &str) -> Result<Option<String>, Error> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.invalid(format!("`{name}` must be a string"))),
        }
    }

    fn string(&mut self, name: &str) -> Result<String, Error> {
        let value = self.opt_string(name)?;
        self.required(name, value)
    }

    fn opt_u64(&mut self, name: &str) -> Result<Option<u64>, Error> {
        match self.take(name) {
            None => Ok(None),
            Some(v) => {
                v.as_u64().map(Some).ok_or_else(|| self.invalid(format!("`{name}` must be a whole number")))
            }
        }
    }

    fn u64(&mut self, name: &str) -> Result<u64, Error> {
        let value = self.opt_u64(name)?;
        self.required(name, value)
    }

    fn opt_u32(&mut self, name: &str) -> Result<Option<u32>, Error> {
        match self.opt_u64(name)? {
            None => Ok(None),
            Some(n) => {
                u32::try_from(n).map(Some).map_err(|_| self.invalid(format!("`{name}` is out of range")))
            }
        }
    }

    fn opt_room(&mut self, name: &str) -> Result<Option<RoomId>, Error> {
        self.opt_string(name)?.map(|s| RoomId::parse(&s).map_err(|e| self.invalid(e))).transpose()
    }

    fn room(&mut self) -> Result<RoomId, Error> {
        let value = self.opt_room("room")?;
        self.required("room", value)
    }

    fn opt_user(&mut self, name: &str) -> Result<Option<UserId>, Error> {
        self.opt_string(name)?.map(|s| UserId::parse(&s).map_err(|e| self.invalid(e))).transpose()
    }

    fn user(&mut self) -> Result<UserId, Error> {
        let value = self.opt_user("user")?;
        self.required("user", value)
    }

    fn users(&mut self) -> Result<Vec<UserId>, Error> {
        let value = self.take("users");
        let Some(Value::Array(items)) = value else {
            return Err(self.invalid("`users` must be an array of user ids"));
        };
        items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => UserId::parse(&s).map_err(|e| self.invalid(e)),
                _ => Err(self.invalid("`users` must be an array of user ids")),
            })
            .collect()
    }

    /// A field of a type with its own small `Deserialize` (an enum of names, a flat
    /// struct).
    fn opt_typed<T: DeserializeOwned>(&mut self, name: &str) -> Result<Option<T>, Error> {
        self.take(name)
            .map(|v| serde_json::from_value(v).map_err(|e| self.invalid(format!("`{name}`: {e}"))))
            .transpose()
    }

    fn typed<T: DeserializeOwned>(&mut self, name: &str) -> Result<T, Error> {
        let value = self.opt_typed(name)?;
        self.required(name, value)
    }

    /// The page fields every list op has.
    fn page(&mut self) -> Result<(Option<u32>, Option<String>), Error> {
        Ok((self.opt_u32("limit")?, self.opt_string("cursor")?))
    }

    fn finish(self, op: Op) -> Result<Op, Error> {
        match self.map.keys().next() {
            Some(unknown) => Err(self.invalid(format!("unknown field `{unknown}`"))),
            None => Ok(op),
        }
    }
}

/// The op a JSON request (`{"op":"room.get","room":"r_…"}`) asks for. `auth` and `send`
/// are not read here: the client authenticates itself, and sends go through the outbox.
pub(crate) fn op_from_json(text: &str) -> Result<Op, Error> {
    let value: Value = serde_json::from_str(text).map_err(|e| Error::Invalid(format!("request: {e}")))?;
    let Value::Object(mut map) = value else {
        return Err(Error::Invalid("a request is a JSON object".into()));
    };
    let op = match map.remove("op") {
        Some(Value::String(op)) => op,
        _ => return Err(Error::Invalid("a request names its `op`".into())),
    };
    let mut f = Fields { op, map };
    let op = match f.op.as_str() {
        "room.create" => Op::RoomCreate {
            name: f.string("name")?,
            kind: f.typed("kind")?,
            topic: f.opt_string("topic")?,
            settings: f.opt_typed("settings")?,
        },
        "join" => Op::Join { room: f.room()?, since: f.opt_u64("since")? },
        "leave" => Op::Leave { room: f.room()? },
        "history" => Op::History {
            room: f.room()?,
            before: f.opt_u64("before")?,
            after: f.opt_u64("after")?,
            limit: f.opt_u32("limit")?,
            cursor: f.opt_string("cursor")?,
            threads: f.opt_typed("threads")?.unwrap_or_default(),
        },
        "thread.history" => Op::ThreadHistory {
            room: f.room()?,
            root: f.u64("root")?,
            before: f.opt_u64("before")?,
            after: f.opt_u64("after")?,
            limit: f.opt_u32("limit")?,
            cursor: f.opt_string("cursor")?,
        },
        "thread.list" => {
            let room = f.room()?;
            let (limit, cursor) = f.page()?;
            Op::ThreadList { room, limit, cursor }
        }
        "thread.read" => Op::ThreadRead { room: f.room()?, root: f.u64("root")?, seq: f.u64("seq")? },
        "ping" => Op::Ping {},
        "typing.start" => Op::TypingStart { room: f.room()? },
        "typing.stop" => Op::TypingStop { room: f.room()? },
        "receipt" => {
            Op::Receipt { room: f.room()?, delivered: f.opt_u64("delivered")?, read: f.opt_u64("read")? }
        }
        "sync" => {
            let (limit, cursor) = f.page()?;
            Op::Sync { limit, cursor }
        }
        "edit" => Op::Edit { room: f.room()?, seq: f.u64("seq")?, text: f.string("text")? },
        "edit.list" => {
            let (room, seq) = (f.room()?, f.u64("seq")?);
            let (limit, cursor) = f.page()?;
            Op::EditList { room, seq, limit, cursor }
        }
        "delete" => Op::Delete { room: f.room()?, seq: f.u64("seq")? },
        "receipt.list" => {
            let (room, seq) = (f.room()?, f.u64("seq")?);
            let delivered = f.opt_typed("delivered")?.unwrap_or(false);
            let (limit, cursor) = f.page()?;
            Op::ReceiptList { room, seq, delivered, limit, cursor }
        }
        "forward" => {
            let room = f.room()?;
            let cid = f.string("cid")?;
            let cid = ClientMsgId::parse(&cid).map_err(|e| f.invalid(e))?;
            let from_room = f.opt_room("from_room")?;
            let from_room = f.required("from_room", from_room)?;
            Op::Forward {
                room,
                cid,
                from_room,
                seq: f.u64("seq")?,
                text: f.opt_string("text")?.unwrap_or_default(),
            }
        }
        "pin" => Op::Pin { room: f.room()?, seq: f.u64("seq")? },
        "unpin" => Op::Unpin { room: f.room()?, seq: f.u64("seq")? },
        "pin.list" => {
            let room = f.room()?;
            let (limit, cursor) = f.page()?;
            Op::PinList { room, limit, cursor }
        }
        "room.list" => {
            let query = f.opt_string("query")?;
            let (limit, cursor) = f.page()?;
            Op::RoomList { query, limit, cursor }
        }
        "dm.open" => Op::DmOpen { user: f.user()? },
        "react" => Op::React { room: f.room()?, seq: f.u64("seq")?, emoji: f.string("emoji")? },
        "unreact" => Op::Unreact { room: f.room()?, seq: f.u64("seq")?, emoji: f.string("emoji")? },
        "room.get" => Op::RoomGet { room: f.room()? },
        "room.update" => Op::RoomUpdate {
            room: f.room()?,
            name: f.opt_string("name")?,
            topic: f.opt_string("topic")?,
            settings: f.opt_typed("settings")?,
        },
        "room.delete" => Op::RoomDelete { room: f.room()? },
        "room.members" => {
            let room = f.room()?;
            let (limit, cursor) = f.page()?;
            Op::RoomMembers { room, limit, cursor }
        }
        "room.invite" => Op::RoomInvite { room: f.room()?, user: f.user()? },
        "invite.list" => {
            let (limit, cursor) = f.page()?;
            Op::InviteList { limit, cursor }
        }
        "invite.accept" => Op::InviteAccept { room: f.room()? },
        "invite.decline" => Op::InviteDecline { room: f.room()? },
        "kick" => Op::Kick { room: f.room()?, user: f.user()?, reason: f.opt_string("reason")? },
        "ban" => Op::Ban { room: f.room()?, user: f.user()?, reason: f.opt_string("reason")? },
        "unban" => Op::Unban { room: f.room()?, user: f.user()? },
        "mute" => Op::Mute {
            room: f.room()?,
            user: f.user()?,
            duration_secs: f.u64("duration_secs")?,
            reason: f.opt_string("reason")?,
        },
        "unmute" => Op::Unmute { room: f.room()?, user: f.user()? },
        "role.set" => Op::RoleSet { room: f.room()?, user: f.user()?, role: f.typed("role")? },
        "room.transfer" => Op::RoomTransfer { room: f.room()?, user: f.user()? },
        "user.get" => Op::UserGet { user: f.user()? },
        "user.update" => Op::UserUpdate {
            display_name: f.opt_string("display_name")?,
            avatar: f.opt_string("avatar")?,
            status_text: f.opt_string("status_text")?,
            share_read_receipts: f.opt_typed("share_read_receipts")?,
        },
        "user.search" => Op::UserSearch { prefix: f.string("prefix")?, limit: f.opt_u32("limit")? },
        "friend.request" => Op::FriendRequest { user: f.user()? },
        "friend.accept" => Op::FriendAccept { user: f.user()? },
        "friend.decline" => Op::FriendDecline { user: f.user()? },
        "friend.cancel" => Op::FriendCancel { user: f.user()? },
        "friend.remove" => Op::FriendRemove { user: f.user()? },
        "friend.list" => {
            let (limit, cursor) = f.page()?;
            Op::FriendList { limit, cursor }
        }
        "block" => Op::Block { user: f.user()? },
        "unblock" => Op::Unblock { user: f.user()? },
        "block.list" => {
            let (limit, cursor) = f.page()?;
            Op::BlockList { limit, cursor }
        }
        "presence.set" => Op::PresenceSet { status: f.typed("status")? },
        "presence.subscribe" => Op::PresenceSubscribe { users: f.users()? },
        "presence.unsubscribe" => Op::PresenceUnsubscribe { users: f.users()? },
        "keys.upload" => Op::KeysUpload {
            device_id: f.string("device_id")?,
            identity_key: f.string("identity_key")?,
            signing_key: f.opt_string("signing_key")?,
            one_time_keys: f.opt_typed("one_time_keys")?.unwrap_or_default(),
        },
        "keys.list" => Op::KeysList { user: f.user()? },
        "keys.claim" => Op::KeysClaim { user: f.user()?, device_id: f.opt_string("device_id")? },
        "search" => {
            let query = f.string("query")?;
            let (room, from) = (f.opt_room("room")?, f.opt_user("from")?);
            let (before, after) = (f.opt_u64("before")?, f.opt_u64("after")?);
            let order = f.opt_typed("order")?;
            let (limit, cursor) = f.page()?;
            Op::Search { query, room, from, before, after, order, limit, cursor }
        }
        "notifications.get" => Op::NotificationsGet {},
        "notifications.set" => {
            Op::NotificationsSet { level: f.opt_typed("level")?, keywords: f.opt_typed("keywords")? }
        }
        "notifications.room" => Op::NotificationsRoom {
            room: f.room()?,
            level: f.opt_typed("level")?,
            muted: f.opt_typed("muted")?.unwrap_or(false),
            muted_until: f.opt_u64("muted_until")?,
        },
        "push.subscribe" => Op::PushSubscribe {
            endpoint: f.string("endpoint")?,
            p256dh: f.string("p256dh")?,
            auth: f.string("auth")?,
        },
        "push.unsubscribe" => Op::PushUnsubscribe { endpoint: f.string("endpoint")? },
        "auth" => return Err(f.invalid("the client authenticates its connections itself")),
        "send" => return Err(f.invalid("sends go through the outbox (send)")),
        other => return Err(Error::Invalid(format!("no op {other:?}"))),
    };
    f.finish(op)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    /// A request of every op (but `auth` and `send`) with every field set, and with only
    /// the required ones.
    fn examples() -> Vec<&'static str> {
        vec![
            r#"{"op":"room.create","name":"n","kind":"private","topic":"t","settings":{"max_members":5,"file_sharing":false}}"#,
            r#"{"op":"room.create","name":"n","kind":"public"}"#,
            r#"{"op":"join","room":"r_1","since":4}"#,
            r#"{"op":"join","room":"r_1"}"#,
            r#"{"op":"leave","room":"r_1"}"#,
            r#"{"op":"history","room":"r_1","before":9,"after":2,"limit":10,"cursor":"c"}"#,
            r#"{"op":"history","room":"r_1"}"#,
            r#"{"op":"history","room":"r_1","threads":"exclude"}"#,
            r#"{"op":"thread.history","room":"r_1","root":2,"before":9,"after":2,"limit":10,"cursor":"c"}"#,
            r#"{"op":"thread.history","room":"r_1","root":2}"#,
            r#"{"op":"thread.list","room":"r_1","limit":5,"cursor":"c"}"#,
            r#"{"op":"thread.list","room":"r_1"}"#,
            r#"{"op":"thread.read","room":"r_1","root":2,"seq":4}"#,
            r#"{"op":"ping"}"#,
            r#"{"op":"typing.start","room":"r_1"}"#,
            r#"{"op":"typing.stop","room":"r_1"}"#,
            r#"{"op":"receipt","room":"r_1","delivered":3,"read":2}"#,
            r#"{"op":"sync","limit":5,"cursor":"c"}"#,
            r#"{"op":"sync"}"#,
            r#"{"op":"edit","room":"r_1","seq":3,"text":"x"}"#,
            r#"{"op":"edit.list","room":"r_1","seq":3,"limit":5,"cursor":"c"}"#,
            r#"{"op":"edit.list","room":"r_1","seq":3}"#,
            r#"{"op":"pin","room":"r_1","seq":3}"#,
            r#"{"op":"forward","room":"r_1","cid":"c-1","from_room":"r_2","seq":3,"text":"look"}"#,
            r#"{"op":"forward","room":"r_1","cid":"c-1","from_room":"r_2","seq":3}"#,
            r#"{"op":"receipt.list","room":"r_1","seq":3,"delivered":true,"limit":5,"cursor":"c"}"#,
            r#"{"op":"receipt.list","room":"r_1","seq":3}"#,
            r#"{"op":"user.update","share_read_receipts":false}"#,
            r#"{"op":"unpin","room":"r_1","seq":3}"#,
            r#"{"op":"pin.list","room":"r_1","limit":5,"cursor":"c"}"#,
            r#"{"op":"delete","room":"r_1","seq":3}"#,
            r#"{"op":"room.list","query":"q","limit":5,"cursor":"c"}"#,
            r#"{"op":"dm.open","user":"u_2"}"#,
            r#"{"op":"react","room":"r_1","seq":1,"emoji":"👍"}"#,
            r#"{"op":"unreact","room":"r_1","seq":1,"emoji":"👍"}"#,
            r#"{"op":"room.get","room":"r_1"}"#,
            r#"{"op":"room.update","room":"r_1","name":"n","topic":"","settings":{"slow_mode_secs":3}}"#,
            r#"{"op":"room.delete","room":"r_1"}"#,
            r#"{"op":"room.members","room":"r_1","limit":2,"cursor":"c"}"#,
            r#"{"op":"room.invite","room":"r_1","user":"u_2"}"#,
            r#"{"op":"invite.list","limit":2}"#,
            r#"{"op":"invite.accept","room":"r_1"}"#,
            r#"{"op":"invite.decline","room":"r_1"}"#,
            r#"{"op":"kick","room":"r_1","user":"u_2","reason":"r"}"#,
            r#"{"op":"ban","room":"r_1","user":"u_2"}"#,
            r#"{"op":"unban","room":"r_1","user":"u_2"}"#,
            r#"{"op":"mute","room":"r_1","user":"u_2","duration_secs":60,"reason":"r"}"#,
            r#"{"op":"unmute","room":"r_1","user":"u_2"}"#,
            r#"{"op":"role.set","room":"r_1","user":"u_2","role":"moderator"}"#,
            r#"{"op":"room.transfer","room":"r_1","user":"u_2"}"#,
            r#"{"op":"user.get","user":"u_2"}"#,
            r#"{"op":"user.update","display_name":"D","avatar":"https://a/b.png","status_text":"s"}"#,
            r#"{"op":"user.update"}"#,
            r#"{"op":"user.search","prefix":"al","limit":3}"#,
            r#"{"op":"friend.request","user":"u_2"}"#,
            r#"{"op":"friend.accept","user":"u_2"}"#,
            r#"{"op":"friend.decline","user":"u_2"}"#,
            r#"{"op":"friend.cancel","user":"u_2"}"#,
            r#"{"op":"friend.remove","user":"u_2"}"#,
            r#"{"op":"friend.list","cursor":"c"}"#,
            r#"{"op":"block","user":"u_2"}"#,
            r#"{"op":"unblock","user":"u_2"}"#,
            r#"{"op":"block.list"}"#,
            r#"{"op":"presence.set","status":"invisible"}"#,
            r#"{"op":"presence.subscribe","users":["u_2","u_3"]}"#,
            r#"{"op":"presence.unsubscribe","users":[]}"#,
            r#"{"op":"keys.upload","device_id":"d","identity_key":"k","signing_key":"s","one_time_keys":[{"key_id":"1","key":"k"}]}"#,
            r#"{"op":"keys.upload","device_id":"d","identity_key":"k"}"#,
            r#"{"op":"keys.list","user":"u_2"}"#,
            r#"{"op":"keys.claim","user":"u_2","device_id":"d"}"#,
            r#"{"op":"search","query":"q","room":"r_1","from":"u_2","before":9,"after":1,"order":"newest","limit":5,"cursor":"c"}"#,
            r#"{"op":"search","query":"q","room":null}"#,
            r#"{"op":"notifications.get"}"#,
            r#"{"op":"notifications.set","level":"all","keywords":["deploy"]}"#,
            r#"{"op":"notifications.set"}"#,
            r#"{"op":"notifications.room","room":"r_1","level":"none","muted":true,"muted_until":9}"#,
            r#"{"op":"notifications.room","room":"r_1"}"#,
            r#"{"op":"push.subscribe","endpoint":"https://push.example/1","p256dh":"B","auth":"a"}"#,
            r#"{"op":"push.unsubscribe","endpoint":"https://push.example/1"}"#,
        ]
    }

    #[test]
    fn reads_every_op_as_its_own_deserialize_does() {
        let mut seen = std::collections::BTreeSet::new();
        for text in examples() {
            let expected: Op = serde_json::from_str(text).unwrap();
            assert_eq!(op_from_json(text).unwrap(), expected, "{text}");
            seen.insert(expected.name().to_owned());
        }
        let every: std::collections::BTreeSet<String> = palaver_protocol::typescript::op_names()
            .into_iter()
            .filter(|op| op != "auth" && op != "send")
            .collect();
        assert_eq!(seen, every, "an example of every op");
    }

    #[test]
    fn refuses_what_deserialize_refuses() {
        let refused = [
            r#"{"op":"room.get"}"#,
            r#"{"op":"room.get","room":"x_1"}"#,
            r#"{"op":"room.get","room":"r_1","extra":1}"#,
            r#"{"op":"join","room":"r_1","since":-1}"#,
            r#"{"op":"join","room":"r_1","since":"4"}"#,
            r#"{"op":"history","room":"r_1","limit":4294967296}"#,
            r#"{"op":"role.set","room":"r_1","user":"u_2","role":"emperor"}"#,
            r#"{"op":"presence.subscribe","users":["x"]}"#,
            r#"{"op":"presence.subscribe","users":"u_2"}"#,
            r#"{"op":"nope"}"#,
            r#"{"op":"notifications.set","level":"loud"}"#,
            r#"{"op":"notifications.set","keywords":"deploy"}"#,
            r#"{"op":"notifications.room","room":"r_1","muted":1}"#,
            r#"{"room":"r_1"}"#,
            r#"[1]"#,
            r#"{"op":"auth","token":"t"}"#,
        ];
        for text in refused {
            assert!(matches!(op_from_json(text), Err(Error::Invalid(_))), "{text}");
            if !text.contains("\"auth\"") {
                assert!(serde_json::from_str::<Op>(text).is_err(), "{text}");
            }
        }
    }
}
