//! The chat tables' contract: every statement of `chat-store` prepares against a keyspace
//! migrated by `schemas/cql`, and what the write plan stores is what the reads return — the
//! deletion rule included (a message deleted hours after it was sent is marked in its bucket).

use chat_store::{bucket_of, cql, cql::Body, plan, ReadStatements, Record, WriteStatements};
use integration_tests::TestEnv;
use scylla::response::PagingState;
use tci_schemas::{ChatMessage, ModerationEvent, ModerationKind, User};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_writes_read_back_and_late_deletions_are_found() -> anyhow::Result<()> {
    let env = TestEnv::new("chat_store_rw");
    let session = env.migrate().await?;
    let ks = env.cfg.cassandra.keyspace.clone();
    let writes = WriteStatements::prepare(&session, &ks).await?;
    let reads = ReadStatements::prepare(&session, &ks, std::time::Duration::from_secs(10)).await?;

    let sent = 1_706_400_123_456;
    let message = ChatMessage {
        broadcaster_id: 7,
        id: "m-1".into(),
        sent_timestamp: sent,
        received_at: sent + 3,
        text: "hello".into(),
        user: User {
            id: "42".into(),
            name: "bob".into(),
            ..User::default()
        },
        raw_line: Some("@id=m-1 :bob!bob@bob.tmi.twitch.tv PRIVMSG #c :hello".into()),
        ..ChatMessage::default()
    };
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
                    .rows::<(i64, String, Option<String>, Option<i64>)>()?
                    .collect::<Result<Vec<_>, _>>()?,
            )
        }
    };
    let json = page(reads.chat_page(Body::Message), (7i64, bucket, sent, sent)).await?;
    assert_eq!(
        json,
        vec![(
            sent,
            "m-1".to_string(),
            Some(message.to_spec_json()),
            Some(42)
        )],
        "a channel page carries the chatter's id"
    );
    let raw = page(reads.chat_page(Body::RawLine), (7i64, bucket, sent, sent)).await?;
    assert_eq!(raw[0].2, message.raw_line);
    let (qr, _) = session
        .execute_single_page(
            reads.user_page(Body::Message),
            (7i64, 42i64, bucket, sent, sent),
            PagingState::start(),
        )
        .await?;
    let index = qr
        .into_rows_result()?
        .rows::<(i64, String, Option<String>)>()?
        .collect::<Result<Vec<_>, _>>()?;
    assert_eq!(
        index,
        vec![(sent, "m-1".to_string(), None)],
        "the by-user index row carries the key, not the message"
    );
    let (qr, _) = session
        .execute_single_page(
            reads.chat_by_keys(Body::Message),
            (7i64, bucket, vec![(sent, "m-1")]),
            PagingState::start(),
        )
        .await?;
    let by_key = qr
        .into_rows_result()?
        .rows::<(i64, String, Option<String>)>()?
        .collect::<Result<Vec<_>, _>>()?;
    assert_eq!(
        by_key,
        vec![(sent, "m-1".to_string(), Some(message.to_spec_json()))],
        "the index row finds its message"
    );
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
