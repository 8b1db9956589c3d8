//! The foundation round trip: schema registry → Kafka → consumer group → Cassandra → read back,
//! compared field by field; and the registry's refusal of an incompatible schema change.

use std::time::Duration;

use futures::StreamExt;
use integration_tests::TestEnv;
use rdkafka::{
    consumer::{CommitMode, Consumer, StreamConsumer},
    producer::FutureRecord,
    Message,
};
use tci_common::{
    config::KafkaConfig,
    kafka,
    registry::{AvroCodec, RegistryAdmin, RegistryError},
};
use tci_schemas::{Badge, ChatMessage, Emote, EmotePosition, Room, Tag, User};

fn sample(broadcaster_id: i64, n: i64) -> ChatMessage {
    ChatMessage {
        broadcaster_id,
        id: format!("00000000-0000-4000-8000-{n:012}"),
        sent_timestamp: 1_706_408_359_963 + n,
        received_at: 1_706_408_360_000 + n,
        text: format!("héllo 🐸 #{n} eavShy"),
        is_me: n % 2 == 0,
        bits: (n % 3) as i32 * 100,
        reply_parent_msg_id: Some("178293f6-b521-4d25-b808-9d36cc373069".into()),
        reply_parent_user_id: Some("39988164".into()),
        reply_parent_user_login: Some("uhblivean24".into()),
        reply_parent_display_name: Some("Uhblivean24".into()),
        reply_parent_msg_body: Some("@cakebud figure it out".into()),
        reply_thread_parent_msg_id: None,
        reply_thread_parent_user_login: None,
        emotes: Some(vec![Emote {
            id: "emotesv2_a4".into(),
            positions: vec![EmotePosition { start: 12, end: 17 }],
        }]),
        room: Room {
            name: "sneakylol".into(),
            is_followers_only: true,
            room_id: broadcaster_id.to_string(),
            ..Room::default()
        },
        user: User {
            name: "cakebud".into(),
            badge_info: Some(vec![Badge {
                name: "subscriber".into(),
                version: "38".into(),
            }]),
            badges: Some(vec![Badge {
                name: "vip".into(),
                version: "1".into(),
            }]),
            color: Some("#FF69B4".into()),
            display_name: "CakeBud".into(),
            subscriber: true,
            id: "94880631".into(),
            vip: true,
            ..User::default()
        },
        raw_tags: vec![Tag {
            key: "id".into(),
            value: format!("{n}"),
        }],
        raw_line: Some(format!(
            "@id={n};room-id=24538518 :cakebud!cakebud@cakebud.tmi.twitch.tv PRIVMSG #sneakylol :message {n}"
        )),
    }
}

#[tokio::test]
async fn avro_record_round_trips_through_registry_kafka_and_cassandra() -> anyhow::Result<()> {
    let env = TestEnv::new("foundation");
    env.create_topics(3).await?;
    let session = env.migrate().await?;
    let ks = env.cfg.cassandra.keyspace.clone();
    let topic = env.cfg.topics.chat.clone();

    // Register and produce.
    let codec = AvroCodec::new(&env.cfg.registry)?;
    let schema_id = codec
        .register_value_schema(&topic, tci_schemas::CHAT_MESSAGE_AVSC)
        .await?;
    assert!(schema_id > 0);
    let producer = kafka::producer(&env.cfg.kafka, "it-foundation", &[])?;
    let sent: Vec<ChatMessage> = (0..5).map(|n| sample(24538518, n)).collect();
    for m in &sent {
        let payload = codec.encode(&topic, m).await?;
        assert_eq!(payload[0], 0, "Confluent magic byte");
        assert_eq!(
            u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]),
            schema_id
        );
        let key = m.broadcaster_id.to_string();
        producer
            .send(
                FutureRecord::to(&topic).key(&key).payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
    }

    // Consume in a group, write to Cassandra, store the offset only after the write.
    let consumer: StreamConsumer = kafka::consumer(
        &env.cfg.kafka,
        &env.group("ingest"),
        "it",
        rdkafka::consumer::DefaultConsumerContext,
        &[],
    )?;
    consumer.subscribe(&[&topic])?;
    let insert = session.prepare(chat_store::cql::insert_chat(&ks)).await?;
    let mut received = Vec::new();
    let mut stream = consumer.stream();
    while received.len() < sent.len() {
        let msg = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("stream ended"))??;
        let m: ChatMessage = codec.decode(msg.payload()).await?;
        session
            .execute_unpaged(
                &insert,
                (
                    m.broadcaster_id,
                    chat_store::bucket_of(m.sent_timestamp),
                    m.sent_timestamp,
                    &m.id,
                    m.user_id(),
                    m.to_spec_json(),
                    m.received_at,
                    m.raw_line.as_deref(),
                    tci_schemas::RoomSettings::encode(&m.room, m.broadcaster_id),
                ),
            )
            .await?;
        consumer.store_offset_from_message(&msg)?;
        received.push(m);
    }
    drop(stream);
    consumer.commit_consumer_state(CommitMode::Sync)?;

    // Field by field, the decoded records equal what was sent.
    received.sort_by_key(|m| m.sent_timestamp);
    assert_eq!(received, sent);

    // And Cassandra returns the exact rows.
    let mut scratch = tci_schemas::PyJson::default();
    for m in &sent {
        let row = session
            .query_unpaged(
                chat_store::cql::select_chat_row(&ks),
                (
                    m.broadcaster_id,
                    chat_store::bucket_of(m.sent_timestamp),
                    m.sent_timestamp,
                    &m.id,
                ),
            )
            .await?
            .into_rows_result()?
            .single_row::<chat_store::StoredChatTuple>()?;
        let row = chat_store::StoredChatRef::from(&row);
        row.message_json(m.broadcaster_id, &mut scratch)?;
        assert_eq!(
            (row.user_id, scratch.as_str()),
            (Some(94880631), m.to_spec_json().as_str())
        );
        let parsed: serde_json::Value = serde_json::from_str(scratch.as_str())?;
        assert_eq!(parsed["text"], m.text);
        assert_eq!(parsed["user"]["badge_info"]["subscriber"], "38");
    }
    env.drop_keyspace(&session).await;
    Ok(())
}

#[tokio::test]
async fn registry_refuses_an_incompatible_schema_change() -> anyhow::Result<()> {
    let env = TestEnv::new("compat");
    let admin = RegistryAdmin::new(&env.cfg.registry)?;
    let subject = format!("{}-value", env.cfg.topics.chat);
    admin
        .register(&subject, tci_schemas::CHAT_MESSAGE_AVSC)
        .await?;
    admin
        .set_subject_compatibility(&subject, "BACKWARD")
        .await?;

    // A new required field without a default cannot read old records: BACKWARD refuses it.
    let mut schema: serde_json::Value = serde_json::from_str(tci_schemas::CHAT_MESSAGE_AVSC)?;
    schema["fields"]
        .as_array_mut()
        .ok_or_else(|| anyhow::anyhow!("fields"))?
        .push(serde_json::json!({"name": "channel_points", "type": "long"}));
    let err = admin
        .register(&subject, &schema.to_string())
        .await
        .expect_err("must be refused");
    assert!(
        matches!(err, RegistryError::Refused { status: 409, .. }),
        "{err}"
    );

    // The same field with a default is a compatible evolution.
    let fields = schema["fields"]
        .as_array_mut()
        .ok_or_else(|| anyhow::anyhow!("fields"))?;
    if let Some(last) = fields.last_mut() {
        last["default"] = serde_json::json!(0);
    }
    admin.register(&subject, &schema.to_string()).await?;
    assert!(admin.subjects().await?.contains(&subject));
    Ok(())
}

fn wrong_password_cfg(good: &KafkaConfig) -> KafkaConfig {
    let mut k = good.clone();
    k.sasl_password = Some("not-the-password".to_owned().into());
    k
}

/// Against a secured cluster (the stack's SASL_SSL listener), a wrong SASL password and a broker
/// certificate that the CA file does not vouch for are refused, and the error says which, in
/// well under a minute, instead of a bare timeout; a consumer's readiness probe names the
/// failed login too. The right settings then work (control).
#[tokio::test]
async fn kafka_refusals_over_sasl_ssl_name_their_cause() -> anyhow::Result<()> {
    let mut env = TestEnv::new("sasl_refusals");
    let good = integration_tests::sasl_ssl(&env.cfg.kafka)?;
    let specs = kafka::topic_specs()?;
    let topics = env.cfg.topics.clone();
    let setup = |k: KafkaConfig| {
        let (topics, specs) = (topics.clone(), specs.clone());
        async move {
            let t = std::time::Instant::now();
            let r = tokio::time::timeout(
                Duration::from_secs(50),
                kafka::ensure_topics(&k, &topics, &specs, Some(1), Some(1)),
            )
            .await
            .map_err(|_| anyhow::anyhow!("no answer within 50 s"))?;
            anyhow::Ok((r.map(|_| ()).map_err(|e| format!("{e:#}")), t.elapsed()))
        }
    };

    let (r, took) = setup(wrong_password_cfg(&good)).await?;
    let e = r.expect_err("a wrong SASL password is refused");
    eprintln!("wrong password, after {took:?}: {e}");
    assert!(
        e.contains(&good.brokers) && e.contains("SASL_SSL") && e.contains("Authentication failed"),
        "the error names the brokers and the failed login: {e}"
    );
    assert!(took < Duration::from_secs(10), "refused after {took:?}");

    let other_ca = "/etc/ssl/certs/ca-certificates.crt";
    anyhow::ensure!(
        std::path::Path::new(other_ca).exists(),
        "{other_ca} missing (Debian package ca-certificates)"
    );
    // A service's `/readyz` Kafka check says the same: its consumer (served by its stream, as
    // in a service) keeps the failure that the metadata fetch alone does not tell.
    let consumer: std::sync::Arc<StreamConsumer<kafka::ErrorKeeper>> =
        std::sync::Arc::new(kafka::consumer(
            &wrong_password_cfg(&good),
            &env.group("probe"),
            "it",
            kafka::ErrorKeeper::default(),
            &[],
        )?);
    consumer.subscribe(&[&env.cfg.topics.chat])?;
    let served = consumer.clone();
    let serving = tokio::spawn(async move {
        let mut stream = served.stream();
        while stream.next().await.is_some() {}
    });
    // The failed login reaches the consumer's context a moment after it starts: probe until
    // it is named (or 30 s), keeping the last answer for the assertion.
    let mut e = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        e = match kafka::probe(consumer.clone()).await {
            Ok(ok) => format!("the probe passed: {ok}"),
            Err(err) => format!("{err:#}"),
        };
        if e.contains("last connection failure") && e.contains("Authentication failed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    serving.abort();
    assert!(
        e.contains("last connection failure") && e.contains("Authentication failed"),
        "the readiness probe names the failed login: {e}"
    );

    let mut untrusted = good.clone();
    untrusted
        .properties
        .insert("ssl.ca.location".into(), other_ca.into());
    let (r, took) = setup(untrusted).await?;
    let e = r.expect_err("a broker certificate outside the CA file is refused");
    eprintln!("untrusted certificate, after {took:?}: {e}");
    assert!(
        e.contains(&good.brokers) && e.contains("certificate verify failed"),
        "the error names the failed certificate check: {e}"
    );
    assert!(took < Duration::from_secs(10), "refused after {took:?}");

    env.cfg.kafka = good.clone(); // the topics are deleted over SASL_SSL too
    let (r, _) = setup(good).await?;
    r.map_err(|e| anyhow::anyhow!("the right password and CA file work: {e}"))?;
    Ok(())
}
