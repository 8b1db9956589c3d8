//! The chat tables' contract: every statement of `chat-store` prepares against a keyspace
//! migrated by `schemas/cql`, and what the write plan stores is what the reads return — the
//! deletion rule included (a message deleted hours after it was sent is marked in its bucket),
//! and a message stored as its raw line reads back as its record's JSON.

use chat_store::{
    bucket_of, cql, day_of, period_of, plan, user_shard, ReadStatements, Record, StoredChatRef,
    StoredChatTuple, WriteStatements,
};
use integration_tests::TestEnv;
use scylla::response::PagingState;
use tci_schemas::{ModerationEvent, ModerationKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_statement_prepares_against_the_migrated_schema() -> anyhow::Result<()> {
    let env = TestEnv::new("chat_store");
    let session = env.migrate().await?;
    let ks = env.cfg.cassandra.keyspace.clone();
    let mut failed = Vec::new();
    for (name, text) in cql::all(&ks) {
        if let Err(e) = session.prepare(text.as_str()).await {
            failed.push(format!("{name}: {e}"));
        }
    }
    env.drop_keyspace(&session).await;
    assert!(
        failed.is_empty(),
        "statements the schema refuses: {failed:#?}"
    );
    Ok(())
}

/// Chatter `user`'s message `id`, sent at `sent` in channel `broadcaster_id`, is in the by-user
/// index the way a user log reads it: its day in `user_chat_days`, its key in `user_chat_index`.
async fn assert_indexed(
    session: &scylla::client::session::Session,
    reads: &ReadStatements,
    broadcaster_id: i64,
    user: i64,
    sent: i64,
    id: &str,
) -> anyhow::Result<()> {
    let (day, shard) = (day_of(sent), user_shard(user));
    let (qr, _) = session
        .execute_single_page(
            &reads.user_days,
            (broadcaster_id, period_of(day), shard, user, day, day, 10i32),
            PagingState::start(),
        )
        .await?;
    assert_eq!(
        qr.into_rows_result()?.single_row::<(i64,)>()?,
        (day,),
        "{id}: its day is in user_chat_days"
    );
    let (qr, _) = session
        .execute_single_page(
            &reads.user_index_page,
            (broadcaster_id, day, shard, user, sent, sent),
            PagingState::start(),
        )
        .await?;
    assert_eq!(
        qr.into_rows_result()?.single_row::<(i64, String)>()?,
        (sent, id.to_string()),
        "{id}: its key is in user_chat_index"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_writes_read_back_and_late_deletions_are_found() -> anyhow::Result<()> {
    let env = TestEnv::new("chat_store_rw");
    let session = env.migrate().await?;
    let ks = env.cfg.cassandra.keyspace.clone();
    let writes = WriteStatements::prepare(&session, &ks).await?;
    let reads = ReadStatements::prepare(&session, &ks, std::time::Duration::from_secs(10)).await?;

    let sent = 1_706_400_123_456;
    // As the listener builds it from the line: stored as the line and the room state.
    let line = format!("@badges=vip/1;color=#FF0000;display-name=Bob;id=m-1;room-id=7;tmi-sent-ts={sent};user-id=42 :bob!bob@bob.tmi.twitch.tv PRIVMSG #c :hello \"there\"");
    let message = tci_irc::record::build_chat_message(
        &tci_irc::irc::parse(&line)?,
        &tci_irc::record::RoomStates::new(),
        sent + 3,
        &mut Default::default(),
    )?;
    // Deleted five hours later (Twitch allows up to six).
    let deletion = ModerationEvent {
        broadcaster_id: 7,
        kind: ModerationKind::ClearMsg,
        event_id: "ev-1".into(),
        sent_timestamp: sent + 5 * 3_600_000,
        channel: "c".into(),
        target_user_id: None,
        target_user_login: Some("bob".into()),
        target_message_id: Some("m-1".into()),
        ban_duration_seconds: None,
        msg_id: None,
        text: Some("hello".into()),
        system_msg: None,
        raw_tags: Vec::new(),
        received_at: None,
        raw_line: None,
    };
    let records = [
        Record::Chat(Box::new(message.clone())),
        Record::Moderation(Box::new(deletion)),
    ];
    let p = plan(&records, 50);
    for w in p.writes() {
        writes.execute(&session, &w).await?;
    }

    let bucket = bucket_of(sent);
    let page = |stmt, values| {
        let session = &session;
        async move {
            let (qr, _) = session
                .execute_single_page(stmt, values, PagingState::start())
                .await?;
            anyhow::Ok(
                qr.into_rows_result()?
                    .rows::<StoredChatTuple>()?
                    .collect::<Result<Vec<_>, _>>()?,
            )
        }
    };
    let rows = page(&reads.chat_page, (7i64, bucket, sent, sent)).await?;
    assert_eq!(rows.len(), 1);
    let row = StoredChatRef::from(&rows[0]);
    assert_eq!(
        (row.sent_ts, row.message_id, row.user_id),
        (sent, "m-1", Some(42)),
        "a channel page carries the chatter's id"
    );
    assert_eq!(
        row.message, None,
        "the line renders the JSON: none is stored"
    );
    assert_eq!(row.raw_line, Some(line.as_str()));
    assert_eq!(
        row.room_state,
        Some("emote-only=0;followers-only=-1;r9k=0;slow=0;subs-only=0")
    );
    let mut j = tci_schemas::PyJson::default();
    row.message_json(7, &mut j)?;
    assert_eq!(
        j.as_str(),
        message.to_spec_json(),
        "it reads back as the record's JSON"
    );

    assert_indexed(&session, &reads, 7, 42, sent, "m-1").await?;
    let (qr, _) = session
        .execute_single_page(
            &reads.chat_by_keys,
            (7i64, bucket, vec![(sent, "m-1")]),
            PagingState::start(),
        )
        .await?;
    let by_key = qr.into_rows_result()?.single_row::<StoredChatTuple>()?;
    assert_eq!(by_key, rows[0], "the index row finds its message");
    let (qr, _) = session
        .execute_single_page(
            &reads.chat_buckets,
            (7i64, bucket, bucket, 10i32),
            PagingState::start(),
        )
        .await?;
    assert_eq!(qr.into_rows_result()?.single_row::<(i64,)>()?, (bucket,));
    let (qr, _) = session
        .execute_single_page(&reads.deleted, (7i64, bucket), PagingState::start())
        .await?;
    assert_eq!(
        qr.into_rows_result()?.single_row::<(String,)>()?,
        ("m-1".to_string(),),
        "the late deletion is marked in the message's own bucket"
    );
    env.drop_keyspace(&session).await;
    Ok(())
}

/// `tci reindex user-logs`: a user log stored before storage v3 (`user_chat_buckets` →
/// `user_chat_messages`) is copied into `user_chat_index` / `user_chat_days`, where the API reads
/// it; running it twice changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_user_logs_are_reindexed_idempotently() -> anyhow::Result<()> {
    let env = TestEnv::new("chat_store_reindex");
    let session = env.migrate().await?;
    let ks = env.cfg.cassandra.keyspace.clone();
    let optouts = chat_store::optout::OptOutStatements::prepare(&session, &ks).await?;
    let reads = ReadStatements::prepare(&session, &ks, std::time::Duration::from_secs(10)).await?;
    // Two messages of chatter 42 in channel 7, three days apart, and one of chatter 43: written
    // the way storage v2 wrote them (the statements are this test's own: chat-store no longer
    // writes those tables).
    let day_ms = chat_store::DAY_MS;
    let t0 = 1_706_400_123_456;
    let messages = [
        (42i64, t0, "m-1"),
        (42, t0 + 3 * day_ms, "m-2"),
        (43, t0 + 1, "m-3"),
    ];
    for (user, sent, id) in messages {
        let bucket = bucket_of(sent);
        session
            .query_unpaged(
                format!("INSERT INTO {ks}.chat_messages (broadcaster_id, bucket, sent_ts, message_id, user_id, message) VALUES (?, ?, ?, ?, ?, ?)"),
                (7i64, bucket, sent, id, user, "{}"),
            )
            .await?;
        session
            .query_unpaged(
                format!("INSERT INTO {ks}.user_chat_messages (broadcaster_id, user_id, bucket, sent_ts, message_id) VALUES (?, ?, ?, ?, ?)"),
                (7i64, user, bucket, sent, id),
            )
            .await?;
        session
            .query_unpaged(
                format!("INSERT INTO {ks}.user_chat_buckets (broadcaster_id, user_id, bucket) VALUES (?, ?, ?)"),
                (7i64, user, bucket),
            )
            .await?;
    }
    for run in 0..2 {
        let (pairs, rows) = optouts.reindex_user_logs(&session, |_, _| {}).await?;
        assert_eq!((pairs, rows), (2, 3), "run {run}");
        for (user, sent, id) in messages {
            assert_indexed(&session, &reads, 7, user, sent, id).await?;
        }
        let count = session
            .query_unpaged(format!("SELECT COUNT(*) FROM {ks}.user_chat_index"), ())
            .await?
            .into_rows_result()?
            .single_row::<(i64,)>()?;
        assert_eq!(
            count,
            (3,),
            "run {run}: nothing indexed twice, nothing extra"
        );
    }
    env.drop_keyspace(&session).await;
    Ok(())
}
