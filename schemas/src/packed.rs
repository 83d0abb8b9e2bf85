//! Packed records: many messages in one Kafka record, for the internal
//! topics (`agentbank.commands`, `agentbank.replies`). The broker's cost is
//! per record and per produce round, not per byte (the local broker, Nisshi,
//! writes one SQLite row per record), so the pipeline sends a batch's messages together.
//!
//! Layout, version 1: the 4 bytes `AB` `0x9B` `0x01` (never the start of an
//! Avro single-object record, `C3 01`), then per item a little-endian `u32`
//! length and the item's bytes (each item is a complete message in its own
//! format, e.g. a single-object Avro command). Items are framed separately so
//! a malformed item fails alone: its neighbours still decode. A record
//! without the marker is one item by itself, so single-message records
//! (outside producers, ticks, settlement results) stay valid input.

use crate::SchemaError;

/// Marks a packed record and its layout version.
pub const MARKER: [u8; 4] = [b'A', b'B', 0x9B, 0x01];
/// Largest packed record we write (librdkafka's `message.max.bytes` is 1 MB).
pub const RECORD_BYTES_MAX: usize = 512 * 1024;
/// Most items in one packed record (sub-indexes stay small).
pub const ITEMS_MAX: usize = 16_384;

/// Whether `bytes` is a packed record.
pub fn is_packed(bytes: &[u8]) -> bool {
    bytes.starts_with(&MARKER)
}

/// Packs `items` into as few records as the size and count bounds allow,
/// keeping their order (an item larger than the bound gets a record alone).
pub fn pack<T: AsRef<[u8]>>(items: &[T]) -> Vec<Vec<u8>> {
    let mut records = vec![];
    let mut current: Vec<u8> = vec![];
    let mut count = 0;
    for item in items {
        let item = item.as_ref();
        let full = current.len() + 4 + item.len() > RECORD_BYTES_MAX || count == ITEMS_MAX;
        if count > 0 && full {
            records.push(std::mem::take(&mut current));
            count = 0;
        }
        if count == 0 {
            current.extend_from_slice(&MARKER);
        }
        current.extend_from_slice(&(item.len() as u32).to_le_bytes());
        current.extend_from_slice(item);
        count += 1;
    }
    if count > 0 {
        records.push(current);
    }
    records
}

/// The items of a record: a packed record's items in order, any other record
/// as its only item. A framing error (a length past the end) ends the
/// record: the items before it are returned, then the error.
pub fn unpack(record: &[u8]) -> Vec<Result<&[u8], SchemaError>> {
    let Some(mut rest) = record.strip_prefix(&MARKER) else {
        return vec![Ok(record)];
    };
    let mut items = vec![];
    while !rest.is_empty() {
        if items.len() == ITEMS_MAX {
            items.push(Err(SchemaError::Framing("packed record: too many items")));
            break;
        }
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            items.push(Err(SchemaError::Framing("packed record: truncated length")));
            break;
        };
        let len = u32::from_le_bytes(*len) as usize;
        if len > tail.len() {
            items.push(Err(SchemaError::Framing(
                "packed record: item past the end",
            )));
            break;
        }
        let (item, tail) = tail.split_at(len);
        items.push(Ok(item));
        rest = tail;
    }
    items
}

/// Decodes every item of a record with `decode`, in order; a framing error
/// or an item that does not decode is an error in its place.
pub fn decode_each<T>(
    record: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, SchemaError>,
) -> Vec<Result<T, SchemaError>> {
    unpack(record)
        .into_iter()
        .map(|item| item.and_then(&decode))
        .collect()
}

/// An item that carries its record key: the key's 16 bytes, then the
/// payload (the events log's items: the agent id, then the Avro event, so
/// the publisher re-keys each event without decoding it).
pub fn keyed(key: uuid::Uuid, payload: &[u8]) -> Vec<u8> {
    let mut item = Vec::with_capacity(16 + payload.len());
    item.extend_from_slice(key.as_bytes());
    item.extend_from_slice(payload);
    item
}

/// The key and payload of a [`keyed`] item.
pub fn split_keyed(item: &[u8]) -> Result<(uuid::Uuid, &[u8]), SchemaError> {
    if item.len() < 16 {
        return Err(SchemaError::Framing("keyed item: shorter than its key"));
    }
    let (key, payload) = item.split_at(16);
    let key: [u8; 16] = key.try_into().expect("16 bytes");
    Ok((uuid::Uuid::from_bytes(key), payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keyed_items_round_trip_and_short_ones_fail() {
        let key = uuid::Uuid::from_u128(42);
        let item = keyed(key, b"payload");
        assert_eq!(split_keyed(&item).unwrap(), (key, &b"payload"[..]));
        assert!(split_keyed(&item[..15]).is_err());
    }

    #[test]
    fn plain_records_are_one_item_and_bad_framing_keeps_what_came_before() {
        assert_eq!(unpack(b"\xc3\x01abc").len(), 1);
        assert_eq!(unpack(b"\xc3\x01abc")[0].as_ref().unwrap(), b"\xc3\x01abc");
        let mut record = pack(&[b"one".to_vec(), b"two".to_vec()]).remove(0);
        record.extend_from_slice(&100u32.to_le_bytes());
        record.extend_from_slice(b"short");
        let items = unpack(&record);
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].as_ref().unwrap(), b"one");
        assert_eq!(items[1].as_ref().unwrap(), b"two");
        assert!(items[2].is_err());
        assert!(is_packed(&record) && !is_packed(b"\xc3\x01"));
    }

    #[test]
    fn big_batches_split_at_the_size_bound() {
        let items: Vec<Vec<u8>> = (0..3).map(|_| vec![7u8; RECORD_BYTES_MAX / 2]).collect();
        let records = pack(&items);
        assert_eq!(records.len(), 3);
        assert!(records.iter().all(|r| unpack(r).len() == 1));
    }

    proptest! {
        #[test]
        fn pack_then_unpack_gives_the_items_back(
            items in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..50)
        ) {
            let records = pack(&items);
            let back: Vec<Vec<u8>> = records
                .iter()
                .flat_map(|r| unpack(r))
                .map(|i| i.unwrap().to_vec())
                .collect();
            prop_assert_eq!(back, items);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut record = MARKER.to_vec();
            record.extend_from_slice(&bytes);
            let _ = unpack(&record);
            // Nor do the decoders of what packed records carry.
            let _ = crate::Command::decode_all(&record);
            let _ = crate::reply::Reply::decode_all(&record);
            let mut internal = crate::command::INTERNAL_V1.to_vec();
            internal.extend_from_slice(&bytes);
            let _ = crate::Command::decode_all(&internal);
        }
    }
}
