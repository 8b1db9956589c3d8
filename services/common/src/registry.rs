//! The schema registry (Confluent REST API; locally Apicurio's `/apis/ccompat/v7`) and Avro in
//! Confluent framing (magic byte 0, 4-byte big-endian schema id, Avro binary).
//!
//! [`AvroCodec`] encodes and decodes with `schema_registry_converter`, which caches schemas by id
//! (decode) and by subject (encode), so the registry is called once per schema, not per record.
//! [`RegistryAdmin`] is the small admin client used by `tci schemas register` and the tests.
//! Subjects follow the TopicNameStrategy: `<topic>-value`.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use apache_avro::{reader::datum::GenericDatumReader, writer::datum::GenericDatumWriter, Schema};
use schema_registry_converter::{
    async_impl::{
        avro::{AvroDecoder, AvroEncoder},
        schema_registry::SrSettings,
    },
    error::SRCError,
    schema_registry_common::{SchemaType, SubjectNameStrategy, SuppliedSchema},
};
use serde::{de::DeserializeOwned, Serialize};

use crate::config::RegistryConfig;

/// Why a record could not be decoded. [`DecodeError::is_retriable`] separates "the registry is
/// unreachable, try again" from "this record is poison, dead-letter it".
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("record has no value (tombstone)")]
    Empty,
    #[error("not Confluent Avro framing: {0}")]
    Framing(String),
    #[error("schema id {id} cannot be used: {reason}")]
    Schema {
        id: u32,
        reason: String,
        retriable: bool,
    },
    #[error("value does not match its writer schema {id}: {reason}")]
    Avro { id: u32, reason: String },
}

impl DecodeError {
    /// True when retrying later may succeed (registry down); false for poison records.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            DecodeError::Schema {
                retriable: true,
                ..
            }
        )
    }

    /// A stable short name for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::Framing(_) => "framing",
            DecodeError::Schema {
                retriable: true, ..
            } => "registry_unavailable",
            DecodeError::Schema { .. } => "unknown_schema",
            DecodeError::Avro { .. } => "avro",
        }
    }
}

/// Why a record could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("avro encode for subject {subject}: {reason}")]
pub struct EncodeError {
    pub subject: String,
    pub reason: String,
    pub retriable: bool,
}

fn settings(cfg: &RegistryConfig) -> Result<SrSettings, SRCError> {
    SrSettings::new_builder(cfg.url.clone())
        .set_timeout(cfg.timeout)
        .no_proxy()
        .build()
}

/// A schema parsed once and kept for the life of the process. Schemas are few (one per topic
/// and version), so they are leaked to get the `'static` borrow that apache-avro's datum
/// writers/readers need; this keeps the per-record path free of schema resolution.
struct Cached {
    id: u32,
    writer: GenericDatumWriter<'static>,
    reader: GenericDatumReader<'static>,
}

fn cache_schema(id: u32, schema: Schema) -> Result<Arc<Cached>, apache_avro::Error> {
    let schema: &'static Schema = Box::leak(Box::new(schema));
    Ok(Arc::new(Cached {
        id,
        writer: GenericDatumWriter::builder(schema)
            .validate(false)
            .build()?,
        reader: GenericDatumReader::builder(schema).build()?,
    }))
}

/// Avro encode/decode through the registry. Cheap to clone (shared caches).
///
/// Encoding and decoding go straight between the Rust struct and Avro bytes (serde, schema
/// aware), without building an intermediate `apache_avro::types::Value` tree: about 5× faster
/// per record than `schema_registry_converter`'s value path. The registry is still reached
/// through `schema_registry_converter`, once per subject (encode) and once per schema id (decode).
#[derive(Clone)]
pub struct AvroCodec {
    encoder: Arc<AvroEncoder>,
    decoder: Arc<AvroDecoder>,
    by_topic: Arc<RwLock<HashMap<String, Arc<Cached>>>>,
    by_id: Arc<RwLock<HashMap<u32, Arc<Cached>>>>,
}

impl AvroCodec {
    pub fn new(cfg: &RegistryConfig) -> anyhow::Result<Self> {
        let s = settings(cfg).map_err(|e| anyhow::anyhow!("schema registry settings: {e}"))?;
        Ok(Self {
            encoder: Arc::new(AvroEncoder::new(s.clone())),
            decoder: Arc::new(AvroDecoder::new(s)),
            by_topic: Arc::default(),
            by_id: Arc::default(),
        })
    }

    /// Registers (or finds) `avsc` as the value schema of `topic` and caches it with its id.
    /// Call once at start-up; afterwards [`Self::encode`] needs no registry call.
    pub async fn register_value_schema(&self, topic: &str, avsc: &str) -> Result<u32, EncodeError> {
        let subject = format!("{topic}-value");
        let strategy = SubjectNameStrategy::TopicNameStrategyWithSchema(
            topic.to_string(),
            false,
            SuppliedSchema::new(None, SchemaType::Avro, avsc.to_string()),
        );
        self.lookup_subject(topic, &subject, strategy)
            .await
            .map(|c| c.id)
    }

    async fn lookup_subject(
        &self,
        topic: &str,
        subject: &str,
        strategy: SubjectNameStrategy,
    ) -> Result<Arc<Cached>, EncodeError> {
        let err = |reason: String, retriable: bool| EncodeError {
            subject: subject.to_string(),
            reason,
            retriable,
        };
        let found = match self.encoder.get_schema_and_id(subject, strategy).await {
            Ok(s) => s,
            Err(e) => {
                self.encoder.remove_errors_from_cache();
                return Err(err(e.to_string(), e.retriable));
            }
        };
        let cached =
            cache_schema(found.id, found.parsed.clone()).map_err(|e| err(e.to_string(), false))?;
        if let Ok(mut m) = self.by_topic.write() {
            m.insert(topic.to_string(), cached.clone());
        }
        Ok(cached)
    }

    /// Encodes `item` with the value schema of `topic` (registered beforehand with
    /// [`Self::register_value_schema`], else the latest version in the registry) in Confluent
    /// framing.
    pub async fn encode<T: Serialize>(
        &self,
        topic: &str,
        item: &T,
    ) -> Result<Vec<u8>, EncodeError> {
        let hit = self
            .by_topic
            .read()
            .ok()
            .and_then(|m| m.get(topic).cloned());
        let cached = match hit {
            Some(c) => c,
            None => {
                let subject = format!("{topic}-value");
                let strategy = SubjectNameStrategy::TopicNameStrategy(topic.to_string(), false);
                self.lookup_subject(topic, &subject, strategy).await?
            }
        };
        encode_with(&cached, item).map_err(|reason| EncodeError {
            subject: format!("{topic}-value"),
            reason,
            retriable: false,
        })
    }

    /// Decodes a Confluent-framed Avro value into `T`, reading with the record's writer schema
    /// (fetched from the registry once per id).
    pub async fn decode<T: DeserializeOwned>(
        &self,
        bytes: Option<&[u8]>,
    ) -> Result<T, DecodeError> {
        let bytes = bytes.ok_or(DecodeError::Empty)?;
        let id = framing_id(bytes)?;
        let hit = self.by_id.read().ok().and_then(|m| m.get(&id).cloned());
        let cached = match hit {
            Some(c) => c,
            None => {
                let schema = self.decoder.get_schema(id).await.map_err(|e| {
                    if e.retriable {
                        self.decoder.remove_errors_from_cache();
                    }
                    DecodeError::Schema {
                        id,
                        reason: e.to_string(),
                        retriable: e.retriable,
                    }
                })?;
                let cached =
                    cache_schema(id, schema.parsed.clone()).map_err(|e| DecodeError::Schema {
                        id,
                        reason: e.to_string(),
                        retriable: false,
                    })?;
                if let Ok(mut m) = self.by_id.write() {
                    m.insert(id, cached.clone());
                }
                cached
            }
        };
        let mut body = &bytes[5..];
        let value: T = cached
            .reader
            .read_deser(&mut body)
            .map_err(|e| DecodeError::Avro {
                id,
                reason: e.to_string(),
            })?;
        if !body.is_empty() {
            return Err(DecodeError::Avro {
                id,
                reason: format!("{} trailing bytes after the record", body.len()),
            });
        }
        Ok(value)
    }
}

fn encode_with<T: Serialize>(cached: &Cached, item: &T) -> Result<Vec<u8>, String> {
    let mut buf = Vec::with_capacity(512);
    buf.push(0u8);
    buf.extend_from_slice(&cached.id.to_be_bytes());
    cached
        .writer
        .write_ser(&mut buf, item)
        .map_err(|e| e.to_string())?;
    Ok(buf)
}

/// Reads the schema id of a Confluent-framed record, or explains why the framing is wrong.
pub fn framing_id(bytes: &[u8]) -> Result<u32, DecodeError> {
    if bytes.len() < 5 {
        return Err(DecodeError::Framing(format!(
            "{} bytes, need at least 5",
            bytes.len()
        )));
    }
    if bytes[0] != 0 {
        return Err(DecodeError::Framing(format!(
            "magic byte is {:#04x}, expected 0x00",
            bytes[0]
        )));
    }
    Ok(u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]))
}

/// Admin calls on the registry's Confluent REST API.
#[derive(Clone)]
pub struct RegistryAdmin {
    http: reqwest::Client,
    base: String,
}

/// A registry answer that was not a success.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("schema registry at {url} is unreachable: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("schema registry refused {what}: HTTP {status}: {body}")]
    Refused {
        what: String,
        status: u16,
        body: String,
    },
}

const CT: &str = "application/vnd.schemaregistry.v1+json";

impl RegistryAdmin {
    pub fn new(cfg: &RegistryConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(Duration::from_secs(3))
            .build()?;
        Ok(Self {
            http,
            base: cfg.url.trim_end_matches('/').to_string(),
        })
    }

    async fn call(
        &self,
        what: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<serde_json::Value, RegistryError> {
        let resp =
            req.header("accept", CT)
                .send()
                .await
                .map_err(|e| RegistryError::Unreachable {
                    url: self.base.clone(),
                    source: e,
                })?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(RegistryError::Refused {
                what: what.to_string(),
                status: status.as_u16(),
                body,
            });
        }
        Ok(serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
    }

    /// A `/readyz` check for [`crate::admin::watch`].
    pub async fn probe(&self) -> anyhow::Result<String> {
        Ok(format!("{} subject(s)", self.subjects().await?.len()))
    }

    /// `GET /subjects`.
    pub async fn subjects(&self) -> Result<Vec<String>, RegistryError> {
        let v = self
            .call(
                "listing subjects",
                self.http.get(format!("{}/subjects", self.base)),
            )
            .await?;
        Ok(serde_json::from_value(v).unwrap_or_default())
    }

    /// `PUT /config {"compatibility": level}`: the global compatibility rule.
    pub async fn set_global_compatibility(&self, level: &str) -> Result<(), RegistryError> {
        let body = serde_json::json!({ "compatibility": level });
        self.call(
            "setting the global compatibility",
            self.http
                .put(format!("{}/config", self.base))
                .header("content-type", CT)
                .json(&body),
        )
        .await
        .map(|_| ())
    }

    /// `PUT /config/<subject>`.
    pub async fn set_subject_compatibility(
        &self,
        subject: &str,
        level: &str,
    ) -> Result<(), RegistryError> {
        let body = serde_json::json!({ "compatibility": level });
        self.call(
            &format!("setting compatibility of {subject}"),
            self.http
                .put(format!("{}/config/{subject}", self.base))
                .header("content-type", CT)
                .json(&body),
        )
        .await
        .map(|_| ())
    }

    /// `POST /subjects/<subject>/versions`: registers an Avro schema, returns its id. An
    /// incompatible schema is refused with [`RegistryError::Refused`] (HTTP 409).
    pub async fn register(&self, subject: &str, avsc: &str) -> Result<u32, RegistryError> {
        let body = serde_json::json!({ "schema": avsc, "schemaType": "AVRO" });
        let v = self
            .call(
                &format!("registering a schema under {subject}"),
                self.http
                    .post(format!("{}/subjects/{subject}/versions", self.base))
                    .header("content-type", CT)
                    .json(&body),
            )
            .await?;
        Ok(v.get("id").and_then(|i| i.as_u64()).unwrap_or(0) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_is_checked_before_any_registry_call() {
        assert!(matches!(
            framing_id(&[0, 0, 0]),
            Err(DecodeError::Framing(_))
        ));
        assert!(
            matches!(framing_id(&[1, 0, 0, 0, 7, 2]), Err(DecodeError::Framing(m)) if m.contains("0x01"))
        );
        assert_eq!(framing_id(&[0, 0, 0, 1, 2, 9]).expect("valid"), 258);
    }

    #[test]
    fn schema_aware_serde_round_trips_and_rejects_garbage() {
        let schema = Schema::parse_str(tci_schemas::CHAT_MESSAGE_AVSC).expect("schema");
        let cached = cache_schema(7, schema).expect("cache");
        let mut m = tci_schemas::ChatMessage {
            id: "abc".into(),
            text: "héllo 🐸".into(),
            ..Default::default()
        };
        m.user.badges = Some(vec![tci_schemas::Badge {
            name: "vip".into(),
            version: "1".into(),
        }]);
        m.reply_parent_msg_id = Some("p".into());
        let bytes = encode_with(&cached, &m).expect("encode");
        assert_eq!(&bytes[..5], &[0, 0, 0, 0, 7]);
        let back: tci_schemas::ChatMessage =
            cached.reader.read_deser(&mut &bytes[5..]).expect("decode");
        assert_eq!(back, m);
        // The same bytes as apache-avro's value path, so other Avro readers agree.
        #[allow(deprecated)]
        let via_value = apache_avro::to_avro_datum(
            &Schema::parse_str(tci_schemas::CHAT_MESSAGE_AVSC).expect("schema"),
            apache_avro::to_value(&m)
                .expect("value")
                .resolve(&Schema::parse_str(tci_schemas::CHAT_MESSAGE_AVSC).expect("schema"))
                .expect("resolve"),
        )
        .expect("encode");
        assert_eq!(&bytes[5..], &via_value[..]);
        // Truncated bytes are an error, not a panic.
        let cut = &bytes[5..bytes.len() / 2];
        assert!(cached
            .reader
            .read_deser::<tci_schemas::ChatMessage>(&mut &cut[..])
            .is_err());
    }

    /// The schema as it was before `fields` were added (version 1 of a subject).
    fn without_fields(avsc: &str, fields: &[&str]) -> Schema {
        let mut v: serde_json::Value = serde_json::from_str(avsc).expect("json");
        if let Some(list) = v["fields"].as_array_mut() {
            list.retain(|f| !fields.contains(&f["name"].as_str().unwrap_or_default()));
        }
        Schema::parse_str(&v.to_string()).expect("older schema")
    }

    /// Avro bytes of `item` written with `schema`, minus the `dropped` fields (an older writer).
    #[allow(deprecated)]
    fn written_by_older<T: Serialize>(item: &T, schema: &Schema, dropped: &[&str]) -> Vec<u8> {
        let mut value = apache_avro::to_value(item).expect("value");
        if let apache_avro::types::Value::Record(fields) = &mut value {
            fields.retain(|(name, _)| !dropped.contains(&name.as_str()));
        }
        apache_avro::to_avro_datum(schema, value.resolve(schema).expect("resolve")).expect("encode")
    }

    #[test]
    fn records_of_schema_version_1_still_decode() {
        // chat_message v1 had no raw_line; moderation_event v1 had no received_at/raw_line.
        let v1 = without_fields(tci_schemas::CHAT_MESSAGE_AVSC, &["raw_line"]);
        let m = tci_schemas::ChatMessage {
            id: "old".into(),
            text: "before raw lines".into(),
            ..Default::default()
        };
        let bytes = written_by_older(&m, &v1, &["raw_line"]);
        let cached = cache_schema(1, v1).expect("cache");
        let back: tci_schemas::ChatMessage = cached
            .reader
            .read_deser(&mut &bytes[..])
            .expect("decode v1");
        assert_eq!(back, m);
        assert_eq!(back.raw_line, None);

        let dropped = ["received_at", "raw_line"];
        let v1 = without_fields(tci_schemas::MODERATION_EVENT_AVSC, &dropped);
        let ev = tci_schemas::ModerationEvent {
            broadcaster_id: 1,
            kind: tci_schemas::ModerationKind::ClearChat,
            event_id: "e".into(),
            sent_timestamp: 2,
            channel: "c".into(),
            target_user_id: None,
            target_user_login: None,
            target_message_id: None,
            ban_duration_seconds: None,
            msg_id: None,
            text: None,
            system_msg: None,
            raw_tags: vec![],
            received_at: None,
            raw_line: None,
        };
        let bytes = written_by_older(&ev, &v1, &dropped);
        let cached = cache_schema(2, v1).expect("cache");
        let back: tci_schemas::ModerationEvent = cached
            .reader
            .read_deser(&mut &bytes[..])
            .expect("decode v1");
        assert_eq!(back, ev);

        // And version 2 written, version 2 read, keeps the line.
        let v2 = Schema::parse_str(tci_schemas::CHAT_MESSAGE_AVSC).expect("schema");
        let cached = cache_schema(3, v2).expect("cache");
        let m2 = tci_schemas::ChatMessage {
            raw_line: Some("@id=x :u!u@u PRIVMSG #c :hi".into()),
            ..m
        };
        let bytes = encode_with(&cached, &m2).expect("encode");
        let back: tci_schemas::ChatMessage = cached
            .reader
            .read_deser(&mut &bytes[5..])
            .expect("decode v2");
        assert_eq!(back, m2);
    }

    #[test]
    fn only_registry_outages_are_retriable() {
        let outage = DecodeError::Schema {
            id: 1,
            reason: "down".into(),
            retriable: true,
        };
        let unknown = DecodeError::Schema {
            id: 1,
            reason: "404".into(),
            retriable: false,
        };
        assert!(outage.is_retriable());
        assert!(!unknown.is_retriable());
        assert!(!DecodeError::Framing("x".into()).is_retriable());
        assert_eq!(unknown.kind(), "unknown_schema");
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let schema = Schema::parse_str(tci_schemas::CHAT_MESSAGE_AVSC).expect("schema");
            let cached = cache_schema(1, schema).expect("cache");
            let _ = cached.reader.read_deser::<tci_schemas::ChatMessage>(&mut &bytes[..]);
        }
    }
}
