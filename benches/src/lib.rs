//! Fixtures shared by the benchmarks: realistic frames and messages.

use palaver_protocol::{
    ClientFrame, ClientMsgId, Event, Message, MessageKind, Op, RoomId, ServerFrame, UserId,
};

/// A room id shaped like the server's.
pub fn room() -> RoomId {
    RoomId::parse("r_01m8bx1mg37h4z6609xh1dn2dm").unwrap_or_else(|_| unreachable!())
}

/// A typical chat message (about 70 bytes of text).
pub fn message(seq: u64) -> Message {
    Message {
        room: room(),
        seq,
        ts: 1_795_695_890_949 + seq,
        sender: UserId::parse("u_01m8bx1mct9k2cdtm6yxcd7xjv").unwrap_or_else(|_| unreachable!()),
        cid: ClientMsgId::parse(&format!("c-{seq:016x}")).unwrap_or_else(|_| unreachable!()),
        kind: MessageKind::Text,
        text: "Hey, are we still on for the design review at 3? I moved it to room B 👍".into(),
        client_ts: Some(1_795_695_890_000),
        reactions: Vec::new(),
        reply_to: None,
        reply: None,
        mentions: Vec::new(),
        file: None,
        edited_at: None,
        deleted: false,
        system: None,
        blocked: false,
        encryption: None,
        mention_all: None,
        forward: None,
        also_to_room: false,
        thread: None,
        thread_summary: None,
    }
}

/// The `message` event a server fans out.
pub fn event(seq: u64) -> ServerFrame {
    ServerFrame::Event(Event::Message(message(seq)))
}

/// A client's `send` request.
pub fn send_request(id: u64) -> ClientFrame {
    let m = message(id);
    ClientFrame {
        id,
        op: Op::Send {
            room: m.room,
            cid: m.cid,
            kind: m.kind,
            text: m.text,
            client_ts: m.client_ts,
            reply_to: None,
            file: None,
            encryption: None,
            also_to_room: false,
            thread: None,
        },
    }
}
