//! Every op has rules tests: a test that lists every `Op` (the `match` is exhaustive,
//! so a new op does not compile until it is listed here) with the tests of its rules,
//! and fails when one of those tests does not exist. An op decided by a room's owner
//! or a people home names tests against the machine that accept it and tests that
//! refuse it; an op answered on the socket's own shard names its session and route
//! tests, and the end-to-end tests of what it reads from storage.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests: failing loudly is the point")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use palaver_protocol::Op;

use crate::route::{Route, route};

/// The tests of one op's rules.
#[derive(Debug)]
enum Rules {
    /// Decided by a room's owner or a people home: unit tests that see it accepted and
    /// refused.
    Machine { accepted: &'static [&'static str], refused: &'static [&'static str] },
    /// Decided by a machine that never refuses it (why), with the tests that accept it.
    NeverRefused { accepted: &'static [&'static str], why: &'static str },
    /// Answered by the socket's own shard: the core's tests of its part (session
    /// admission, routing) and the end-to-end tests (`file.rs`, `test`) of the reads the
    /// shard makes from storage, the search index or other shards (why).
    Local {
        core: &'static [&'static str],
        end_to_end: &'static [(&'static str, &'static str)],
        why: &'static str,
    },
}

const ROUTED_LOCALLY: &str = "reads_of_the_directory_search_sync_and_auth_stay_on_the_sockets_shard";
const ROUTED_TO_WRITERS: &str = "room_ops_go_to_the_rooms_owner_and_people_ops_to_their_home";

fn machine(accepted: &'static [&'static str], refused: &'static [&'static str]) -> Rules {
    Rules::Machine { accepted, refused }
}

/// The rules tests of `op`.
fn rules_of(op: &Op) -> Rules {
    const READS: &str = "a read of storage with paging; its limits and cursors are the protocol's";
    match op {
        Op::Auth { .. } => Rules::Local {
            core: &["only_auth_before_authentication", ROUTED_LOCALLY],
            end_to_end: &[("auth_tokens.rs", "a_bearer_header_on_the_upgrade_authenticates_the_socket")],
            why: "verifying a token is the auth module's (signatures, storage of refresh families)",
        },
        Op::Ping {} => Rules::Local {
            core: &["a_garbage_streak_closes_but_a_good_frame_resets_it", ROUTED_LOCALLY],
            end_to_end: &[("socket_heartbeat.rs", "a_silent_socket_is_closed_and_a_responsive_one_is_kept")],
            why: "a ping only proves the socket is alive",
        },
        Op::Sync { .. } => Rules::Local {
            core: &[ROUTED_LOCALLY],
            end_to_end: &[(
                "receipts_unread.rs",
                "watermarks_unread_counts_and_receipt_events_survive_a_restart",
            )],
            why: READS,
        },
        Op::RoomList { .. } => Rules::Local {
            core: &[ROUTED_LOCALLY],
            end_to_end: &[("rooms_directory.rs", "room_list_shows_public_rooms_filtered_and_paged")],
            why: READS,
        },
        Op::InviteList { .. } => Rules::Local {
            core: &[ROUTED_LOCALLY],
            end_to_end: &[(
                "rooms_invitations.rs",
                "an_outsider_sees_and_enters_a_private_room_only_once_invited",
            )],
            why: READS,
        },
        Op::UserGet { .. } | Op::UserSearch { .. } => Rules::Local {
            core: &[ROUTED_LOCALLY],
            end_to_end: &[("people_friends_blocks.rs", "profiles_can_be_set_read_and_searched")],
            why: READS,
        },
        Op::FriendList { .. } => Rules::Local {
            core: &[ROUTED_LOCALLY],
            end_to_end: &[(
                "people_friends_blocks.rs",
                "friendships_reach_both_sides_and_move_through_every_state",
            )],
            why: READS,
        },
        Op::BlockList { .. } => Rules::Local {
            core: &[ROUTED_LOCALLY],
            end_to_end: &[(
                "people_friends_blocks.rs",
                "a_block_stops_dms_requests_and_invitations_and_flags_messages_for_the_blocker_only",
            )],
            why: READS,
        },
        Op::PresenceSubscribe { .. } | Op::PresenceUnsubscribe { .. } => Rules::Local {
            core: &["presence_is_published_announced_to_followers_and_last_seen_stored", ROUTED_LOCALLY],
            end_to_end: &[
                ("presence_across_shards.rs", "a_friend_sees_online_away_and_offline_with_last_seen"),
                ("sdk_typed_ops.rs", "typed_methods_cover_invitations_moderation_friends_blocks_and_keys"),
            ],
            why: "who may follow whom is read from the friendships in storage; following is the socket's",
        },
        Op::KeysList { .. } => Rules::Local {
            core: &[ROUTED_LOCALLY],
            end_to_end: &[(
                "sdk_typed_ops.rs",
                "typed_methods_cover_invitations_moderation_friends_blocks_and_keys",
            )],
            why: READS,
        },
        Op::Search { .. } => Rules::Local {
            core: &[ROUTED_LOCALLY],
            end_to_end: &[(
                "search_messages.rs",
                "messages_are_searchable_within_seconds_and_only_where_readable",
            )],
            why: "a query of the search index, filtered by the rooms the asker may read",
        },
        Op::RoomCreate { .. } => machine(
            &["a_created_room_is_answered_once_its_records_are_durable"],
            &[
                "room_creation_is_throttled_and_owned_rooms_capped",
                "a_created_room_is_answered_once_its_records_are_durable",
            ],
        ),
        Op::DmOpen { .. } => machine(
            &["a_direct_room_takes_back_the_one_who_left_and_new_ones_with_strangers_are_throttled"],
            &["a_direct_room_takes_back_the_one_who_left_and_new_ones_with_strangers_are_throttled"],
        ),
        Op::Join { .. } | Op::InviteAccept { .. } => machine(
            &[
                "joining_a_public_room_makes_a_member_and_a_private_one_needs_an_invitation",
                ROUTED_TO_WRITERS,
            ],
            &[
                "joining_a_public_room_makes_a_member_and_a_private_one_needs_an_invitation",
                "a_ban_ends_the_members_subscriptions_after_its_notice_is_durable",
            ],
        ),
        Op::Leave { .. } => machine(
            &["leaving_ends_the_members_subscriptions_but_the_owner_must_hand_over_first"],
            &["leaving_ends_the_members_subscriptions_but_the_owner_must_hand_over_first"],
        ),
        Op::Send { .. } => machine(
            &[
                "a_send_is_answered_and_delivered_once_durable_and_a_retry_gets_its_seq",
                "everyone_and_here_mention_the_room_for_its_role_and_skip_who_blocked_the_sender",
                "room_wide_mentions_are_found_like_names_and_everyone_wins",
                "a_thread_reply_takes_the_next_seq_and_its_root_counts_it",
            ],
            &[
                "muted_means_no_new_content",
                "thread_replies_need_a_live_root_of_this_room_one_level_deep",
                "a_thread_starts_on_a_live_plain_message_and_is_one_level_deep",
                "a_refused_write_fails_its_waiters_and_the_room_reloads_once_settled",
            ],
        ),
        Op::Edit { .. } => machine(
            &["an_edit_replaces_the_text_once_durable_and_only_the_sender_may_edit"],
            &[
                "an_edit_replaces_the_text_once_durable_and_only_the_sender_may_edit",
                "a_delete_racing_an_edit_stays_a_delete",
            ],
        ),
        Op::EditList { .. } => machine(
            &["earlier_texts_are_listed_oldest_first_in_pages_to_members"],
            &["earlier_texts_are_listed_oldest_first_in_pages_to_members"],
        ),
        Op::Pin { .. } | Op::Unpin { .. } | Op::PinList { .. } => machine(
            &[
                "pins_are_notices_in_the_log_listed_newest_first_and_survive_a_reload",
                "either_user_pins_in_a_direct_room_and_pins_list_newest_first",
            ],
            &[
                "pins_need_the_pin_role_a_live_message_and_change_something",
                "pins_in_a_private_room_are_for_members_and_a_blocked_peer_pins_nothing",
            ],
        ),
        Op::ReceiptList { .. } => machine(
            &[
                "readers_come_from_watermarks_for_members_without_the_private_or_those_who_blocked",
                "readers_are_members_whose_watermark_reached_the_message_walked_in_bounded_pages",
            ],
            &["readers_come_from_watermarks_for_members_without_the_private_or_those_who_blocked"],
        ),
        Op::Forward { .. } => machine(
            &[
                "a_forward_refers_to_a_readable_original_whose_content_only_its_readers_see",
                "only_live_plain_messages_of_readable_rooms_are_forwarded",
            ],
            &[
                "a_forward_refers_to_a_readable_original_whose_content_only_its_readers_see",
                "only_live_plain_messages_of_readable_rooms_are_forwarded",
            ],
        ),
        Op::Delete { .. } => machine(
            &["a_member_deletes_their_own_message_and_only_a_moderator_anothers"],
            &["a_member_deletes_their_own_message_and_only_a_moderator_anothers"],
        ),
        Op::React { .. } => {
            machine(&["a_reaction_in_flight_counts_as_made"], &["muted_means_no_new_content"])
        }
        Op::Unreact { .. } => machine(
            &["a_reaction_is_removed_once_and_only_by_a_member", ROUTED_TO_WRITERS],
            &["a_reaction_is_removed_once_and_only_by_a_member"],
        ),
        Op::TypingStart { .. } | Op::TypingStop { .. } => machine(
            &["typing_is_announced_to_everyone_but_the_typist_and_only_for_members"],
            &[
                "typing_is_announced_to_everyone_but_the_typist_and_only_for_members",
                "muted_means_no_new_content",
            ],
        ),
        Op::Receipt { .. } => machine(
            &["receipts_move_up_to_the_durable_seq_and_need_membership_and_a_watermark"],
            &["receipts_move_up_to_the_durable_seq_and_need_membership_and_a_watermark"],
        ),
        Op::ThreadHistory { .. } => machine(
            &["a_thread_reply_takes_the_next_seq_and_its_root_counts_it"],
            &["thread_replies_need_a_live_root_of_this_room_one_level_deep"],
        ),
        Op::ThreadList { .. } | Op::ThreadRead { .. } => machine(
            &["thread_read_marks_move_forward_and_count_what_is_unread"],
            &[
                "thread_read_marks_move_forward_and_count_what_is_unread",
                "a_thread_read_mark_moves_forward_up_to_the_newest_reply",
            ],
        ),
        Op::History { .. } => machine(
            &["history_pages_forwards_and_flags_blocked_senders"],
            &["a_private_rooms_details_members_and_history_are_for_members_and_invitees"],
        ),
        Op::RoomGet { .. } | Op::RoomMembers { .. } => machine(
            &[
                "a_private_rooms_details_members_and_history_are_for_members_and_invitees",
                "members_who_blocked_the_asker_show_offline",
            ],
            &["a_private_rooms_details_members_and_history_are_for_members_and_invitees"],
        ),
        Op::RoomUpdate { .. } => machine(
            &["an_update_is_an_admins_and_stored_with_its_notice"],
            &["an_update_is_an_admins_and_stored_with_its_notice"],
        ),
        Op::RoomDelete { .. } => machine(
            &["a_deleted_room_ends_every_subscription_and_is_forgotten"],
            &["only_the_owner_deletes_the_room"],
        ),
        Op::RoomInvite { .. } => machine(
            &["invitations_to_strangers_are_throttled_and_capped_per_recipient"],
            &["invitations_to_strangers_are_throttled_and_capped_per_recipient"],
        ),
        Op::InviteDecline { .. } => {
            machine(&["an_invitation_is_declined_once"], &["an_invitation_is_declined_once"])
        }
        Op::Kick { .. } => machine(
            &["a_kick_removes_a_member_below_the_kicker"],
            &["a_kick_removes_a_member_below_the_kicker"],
        ),
        Op::Ban { .. } => machine(
            &["a_ban_ends_the_members_subscriptions_after_its_notice_is_durable"],
            &["a_ban_is_lifted_by_unban_once"],
        ),
        Op::Unban { .. } => machine(&["a_ban_is_lifted_by_unban_once"], &["a_ban_is_lifted_by_unban_once"]),
        Op::Mute { .. } | Op::Unmute { .. } => machine(
            &["a_mute_is_stored_until_it_ends_and_unmute_lifts_it_once", "muted_means_no_new_content"],
            &["a_mute_is_stored_until_it_ends_and_unmute_lifts_it_once"],
        ),
        Op::RoleSet { .. } => {
            machine(&["roles_are_given_below_the_givers_own"], &["roles_are_given_below_the_givers_own"])
        }
        Op::RoomTransfer { .. } => machine(
            &["the_owner_hands_the_room_over_and_becomes_an_admin"],
            &["the_owner_hands_the_room_over_and_becomes_an_admin"],
        ),
        Op::FriendRequest { .. } => machine(
            &["a_friendship_is_asked_then_accepted_and_each_side_follows_the_other"],
            &[
                "friendship_refusals_name_what_is_wrong",
                "a_refused_write_answers_its_error_and_releases_what_it_held",
            ],
        ),
        Op::FriendAccept { .. } => machine(
            &["a_friendship_is_asked_then_accepted_and_each_side_follows_the_other"],
            &["friendship_refusals_name_what_is_wrong"],
        ),
        Op::FriendDecline { .. } | Op::FriendCancel { .. } | Op::FriendRemove { .. } => machine(
            &["a_request_is_declined_or_cancelled_and_a_friendship_removed"],
            &[
                "a_request_is_declined_or_cancelled_and_a_friendship_removed",
                "friendship_refusals_name_what_is_wrong",
            ],
        ),
        Op::Block { .. } => machine(
            &["a_block_ends_the_friendship_stops_presence_and_refuses_requests_both_ways", ROUTED_TO_WRITERS],
            &["unblocking_lifts_a_block_and_nobody_blocks_themselves"],
        ),
        Op::Unblock { .. } => machine(
            &["unblocking_lifts_a_block_and_nobody_blocks_themselves"],
            &["unblocking_lifts_a_block_and_nobody_blocks_themselves"],
        ),
        Op::UserUpdate { .. } => machine(
            &["a_profile_is_stored_as_sent_or_refused_and_the_next_update_sees_the_pending_one"],
            &["a_profile_is_stored_as_sent_or_refused_and_the_next_update_sees_the_pending_one"],
        ),
        Op::PresenceSet { .. } => Rules::NeverRefused {
            accepted: &["a_chosen_presence_is_published_at_once_without_a_write"],
            why: "the choice is a closed enum checked when the frame is decoded, and nothing is written",
        },
        Op::NotificationsGet {} | Op::NotificationsSet { .. } | Op::NotificationsRoom { .. } => machine(
            &["notification_settings_are_stored_told_to_every_device_and_refused_when_bad"],
            &[
                "notification_settings_are_stored_told_to_every_device_and_refused_when_bad",
                "bad_settings_are_refused",
            ],
        ),
        Op::PushSubscribe { .. } | Op::PushUnsubscribe { .. } => machine(
            &["push_subscriptions_are_kept_per_endpoint_up_to_the_limit"],
            &[
                "push_subscriptions_are_kept_per_endpoint_up_to_the_limit",
                "subscriptions_need_an_https_push_service_and_well_formed_keys",
            ],
        ),
        Op::KeysUpload { .. } | Op::KeysClaim { .. } => machine(
            &["one_time_keys_are_handed_out_once_even_while_their_removal_is_in_flight", ROUTED_TO_WRITERS],
            &["one_time_keys_are_handed_out_once_even_while_their_removal_is_in_flight"],
        ),
    }
}

/// One op of each kind, as a client sends it.
const SAMPLES: &[&str] = &[
    r#"{"op":"auth","token":"t"}"#,
    r#"{"op":"room.create","name":"n","kind":"public"}"#,
    r#"{"op":"join","room":"r_a"}"#,
    r#"{"op":"leave","room":"r_a"}"#,
    r#"{"op":"send","room":"r_a","cid":"c1","text":"hi"}"#,
    r#"{"op":"history","room":"r_a"}"#,
    r#"{"op":"ping"}"#,
    r#"{"op":"typing.start","room":"r_a"}"#,
    r#"{"op":"typing.stop","room":"r_a"}"#,
    r#"{"op":"receipt","room":"r_a","read":1}"#,
    r#"{"op":"sync"}"#,
    r#"{"op":"edit","room":"r_a","seq":1,"text":"x"}"#,
    r#"{"op":"edit.list","room":"r_a","seq":1}"#,
    r#"{"op":"pin","room":"r_a","seq":1}"#,
    r#"{"op":"unpin","room":"r_a","seq":1}"#,
    r#"{"op":"pin.list","room":"r_a"}"#,
    r#"{"op":"thread.history","room":"r_a","root":1}"#,
    r#"{"op":"thread.list","room":"r_a"}"#,
    r#"{"op":"thread.read","room":"r_a","root":1,"seq":2}"#,
    r#"{"op":"forward","room":"r_a","cid":"c1","from_room":"r_b","seq":1}"#,
    r#"{"op":"receipt.list","room":"r_a","seq":1}"#,
    r#"{"op":"delete","room":"r_a","seq":1}"#,
    r#"{"op":"room.list"}"#,
    r#"{"op":"dm.open","user":"u_b"}"#,
    r#"{"op":"react","room":"r_a","seq":1,"emoji":"x"}"#,
    r#"{"op":"unreact","room":"r_a","seq":1,"emoji":"x"}"#,
    r#"{"op":"room.get","room":"r_a"}"#,
    r#"{"op":"room.update","room":"r_a","topic":"t"}"#,
    r#"{"op":"room.delete","room":"r_a"}"#,
    r#"{"op":"room.members","room":"r_a"}"#,
    r#"{"op":"room.invite","room":"r_a","user":"u_b"}"#,
    r#"{"op":"invite.list"}"#,
    r#"{"op":"invite.accept","room":"r_a"}"#,
    r#"{"op":"invite.decline","room":"r_a"}"#,
    r#"{"op":"kick","room":"r_a","user":"u_b"}"#,
    r#"{"op":"ban","room":"r_a","user":"u_b"}"#,
    r#"{"op":"unban","room":"r_a","user":"u_b"}"#,
    r#"{"op":"mute","room":"r_a","user":"u_b","duration_secs":60}"#,
    r#"{"op":"unmute","room":"r_a","user":"u_b"}"#,
    r#"{"op":"role.set","room":"r_a","user":"u_b","role":"moderator"}"#,
    r#"{"op":"room.transfer","room":"r_a","user":"u_b"}"#,
    r#"{"op":"user.get","user":"u_b"}"#,
    r#"{"op":"user.update","display_name":"B"}"#,
    r#"{"op":"user.search","prefix":"b"}"#,
    r#"{"op":"friend.request","user":"u_b"}"#,
    r#"{"op":"friend.accept","user":"u_b"}"#,
    r#"{"op":"friend.decline","user":"u_b"}"#,
    r#"{"op":"friend.cancel","user":"u_b"}"#,
    r#"{"op":"friend.remove","user":"u_b"}"#,
    r#"{"op":"friend.list"}"#,
    r#"{"op":"block","user":"u_b"}"#,
    r#"{"op":"unblock","user":"u_b"}"#,
    r#"{"op":"block.list"}"#,
    r#"{"op":"presence.set","status":"away"}"#,
    r#"{"op":"presence.subscribe","users":["u_b"]}"#,
    r#"{"op":"presence.unsubscribe","users":["u_b"]}"#,
    r#"{"op":"keys.upload","device_id":"d","identity_key":"k"}"#,
    r#"{"op":"keys.list","user":"u_b"}"#,
    r#"{"op":"search","query":"q"}"#,
    r#"{"op":"keys.claim","user":"u_b"}"#,
    r#"{"op":"notifications.get"}"#,
    r#"{"op":"notifications.set","level":"all"}"#,
    r#"{"op":"notifications.room","room":"r_a","muted":true}"#,
    r#"{"op":"push.subscribe","endpoint":"https://p/1","p256dh":"B","auth":"a"}"#,
    r#"{"op":"push.unsubscribe","endpoint":"https://p/1"}"#,
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The names of the test functions in `source` (those under a `#[test]` attribute) and
/// how often each occurs.
fn test_names(source: &str, names: &mut BTreeMap<String, usize>) {
    let mut under_test = false;
    for line in source.lines().map(str::trim) {
        if line == "#[test]" || line.ends_with("::test]") || line.starts_with("#[tokio::test") {
            under_test = true;
        } else if under_test && !line.starts_with("#[") {
            let name = line
                .strip_prefix("async ")
                .unwrap_or(line)
                .strip_prefix("fn ")
                .and_then(|l| l.split('(').next());
            if let Some(name) = name {
                *names.entry(name.to_owned()).or_default() += 1;
            }
            under_test = false;
        }
    }
}

#[test]
fn every_op_has_rules_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut core_tests = BTreeMap::new();
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    for file in &files {
        test_names(&std::fs::read_to_string(file).unwrap(), &mut core_tests);
    }
    let ops: Vec<Op> = SAMPLES
        .iter()
        .map(|json| {
            let frame = format!(r#"{{"id":1,{}"#, &json[1..]);
            palaver_protocol::Codec::Json
                .decode_client(frame.as_bytes())
                .unwrap_or_else(|e| panic!("{json}: {e}"))
                .op
        })
        .collect();
    let sampled: BTreeSet<String> = ops.iter().map(|op| op.name().to_owned()).collect();
    let every: BTreeSet<String> = palaver_protocol::typescript::op_names().into_iter().collect();
    assert_eq!(sampled, every, "one sample per op");
    let core = |op: &Op, names: &[&str], what: &str| {
        assert!(!names.is_empty(), "{}: no {what} tests", op.name());
        for name in names {
            assert_eq!(
                core_tests.get(*name),
                Some(&1),
                "{}: {what} test {name} is not one test of the core",
                op.name()
            );
        }
    };
    for op in &ops {
        let local = matches!(route(op.clone()), Route::Local(_));
        match rules_of(op) {
            Rules::Machine { accepted, refused } => {
                assert!(!local, "{}: answered locally, but listed with a machine's tests", op.name());
                core(op, accepted, "accepting");
                core(op, refused, "refusing");
            }
            Rules::NeverRefused { accepted, why } => {
                assert!(!local && !why.is_empty(), "{}", op.name());
                core(op, accepted, "accepting");
            }
            Rules::Local { core: tests, end_to_end, why } => {
                assert!(
                    local && !why.is_empty(),
                    "{}: decided by a machine, so it needs its rules tests",
                    op.name()
                );
                core(op, tests, "core");
                assert!(!end_to_end.is_empty(), "{}: no end-to-end test", op.name());
                for (file, name) in end_to_end {
                    let mut names = BTreeMap::new();
                    let source = root.join("../../tests").join(file);
                    test_names(&std::fs::read_to_string(&source).unwrap_or_default(), &mut names);
                    assert!(names.contains_key(*name), "{}: no test {name} in tests/{file}", op.name());
                }
            }
        }
    }
}
