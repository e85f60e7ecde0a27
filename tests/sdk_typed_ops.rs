//! The SDK's typed methods for rooms, people and keys against the real server: an
//! invitation accepted, a role, a mute and a kick; a friendship; a block; a profile; a
//! device's keys claimed once.
#![allow(clippy::unwrap_used, reason = "tests: failing loudly is the point")]

use palaver_e2e::Server;
use palaver_protocol::{FriendState, OneTimeKey, PresenceChoice, RoomKind, RoomRole};
use palaver_sdk::{Client, Credentials};

const PASSWORD: &str = "password-123";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_methods_cover_invitations_moderation_friends_blocks_and_keys() {
    let server = Server::start(&["--shards", "2"]);
    let url = server.url("");
    let alice = Client::connect(&url, Credentials::register("alice", PASSWORD)).await.unwrap();
    let bob = Client::connect(&url, Credentials::register("bob", PASSWORD)).await.unwrap();
    let carol = Client::connect(&url, Credentials::register("carol", PASSWORD)).await.unwrap();
    let (bob_id, carol_id) = (bob.user_id().unwrap(), carol.user_id().unwrap());

    // Invitation flow.
    let room = alice.create_room("club", RoomKind::Private).await.unwrap().room_id;
    alice.room_invite(&room, &bob_id).await.unwrap();
    let invites = bob.invite_list().await.unwrap();
    assert_eq!(invites.len(), 1);
    assert_eq!(invites[0].room.room_id, room);
    let joined = bob.invite_accept(&room).await.unwrap();
    assert_eq!(joined.room.room_id, room);
    assert!(bob.invite_list().await.unwrap().is_empty());
    alice.room_invite(&room, &carol_id).await.unwrap();
    carol.invite_decline(&room).await.unwrap();

    let details = alice.room_get(&room).await.unwrap();
    assert_eq!(details.member_count, 2);
    assert_eq!(details.role, Some(RoomRole::Owner));
    let renamed = alice.room_update(&room, Some("the club"), Some("members only"), None).await.unwrap();
    assert_eq!(renamed.room.name, "the club");
    let members = alice.room_members(&room, None, None).await.unwrap();
    assert_eq!(members.members.len(), 2);

    // Moderation: each answer is the seq of the room's notice, in order.
    let promoted = alice.role_set(&room, &bob_id, RoomRole::Moderator).await.unwrap();
    let muted = alice.mute(&room, &bob_id, 60, Some("calm down")).await.unwrap();
    assert!(muted.seq > promoted.seq);
    let unmuted = alice.unmute(&room, &bob_id).await.unwrap();
    let kicked = alice.kick(&room, &bob_id, None).await.unwrap();
    assert!(kicked.seq > unmuted.seq);
    assert_eq!(alice.room_get(&room).await.unwrap().member_count, 1);
    alice.ban(&room, &carol_id, Some("no")).await.unwrap();
    alice.unban(&room, &carol_id).await.unwrap();

    // Friends.
    let asked = alice.friend_request(&bob_id).await.unwrap();
    assert_eq!(asked.state, FriendState::Outgoing);
    let accepted = bob.friend_accept(&alice.user_id().unwrap()).await.unwrap();
    assert_eq!(accepted.state, FriendState::Friends);
    let friends = alice.friend_list().await.unwrap();
    assert_eq!(friends.iter().map(|f| &f.user).collect::<Vec<_>>(), vec![&bob_id]);
    // Presence: friends may follow each other.
    bob.presence_set(PresenceChoice::Away).await.unwrap();
    let presence = alice.presence_subscribe(std::slice::from_ref(&bob_id)).await.unwrap();
    assert_eq!(presence.len(), 1);
    alice.presence_unsubscribe(std::slice::from_ref(&bob_id)).await.unwrap();
    alice.friend_remove(&bob_id).await.unwrap();
    assert!(alice.friend_list().await.unwrap().is_empty());
    alice.friend_request(&carol_id).await.unwrap();
    alice.friend_cancel(&carol_id).await.unwrap();

    // Blocks.
    alice.block(&carol_id).await.unwrap();
    assert_eq!(alice.block_list().await.unwrap(), vec![carol_id.clone()]);
    alice.unblock(&carol_id).await.unwrap();
    assert!(alice.block_list().await.unwrap().is_empty());

    // Profiles.
    let profile = bob.user_update(Some("Bobby"), None, Some("hi")).await.unwrap();
    assert_eq!(profile.display_name.as_deref(), Some("Bobby"));
    assert_eq!(alice.user_get(&bob_id).await.unwrap().profile.display_name.as_deref(), Some("Bobby"));
    let found = alice.user_search("bo", None).await.unwrap();
    assert!(found.iter().any(|p| p.user_id == bob_id));

    // Keys: one one-time key, claimed exactly once.
    let key = OneTimeKey { key_id: "k1".into(), key: "b3RrMQ".into() };
    let uploaded = bob.keys_upload("phone", "aWRlbnRpdHk", None, vec![key]).await.unwrap();
    assert_eq!(uploaded.one_time_key_count, 1);
    assert_eq!(alice.keys_list(&bob_id).await.unwrap().len(), 1);
    assert_eq!(alice.keys_claim(&bob_id, None).await.unwrap().len(), 1);
    let again = alice.keys_claim(&bob_id, Some("phone")).await.unwrap();
    assert!(again.iter().all(|c| c.one_time_key.is_none()), "{again:?}");

    // Deleting the room ends it.
    alice.room_delete(&room).await.unwrap();
    assert!(alice.room_get(&room).await.is_err());
    for client in [alice, bob, carol] {
        client.close();
    }
}
