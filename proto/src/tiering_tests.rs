//! The strata/v1 tiering messages: the values clients rely on stay put.

use prost::Message;

use crate::strata::v1 as pb;

#[test]
fn file_state_numbers_are_fixed() {
    let numbers: Vec<i32> = [
        pb::FileState::Unspecified,
        pb::FileState::Intent,
        pb::FileState::Uploaded,
        pb::FileState::Archived,
        pb::FileState::Released,
        pb::FileState::Recalled,
        pb::FileState::Abandoned,
    ]
    .iter()
    .map(|s| *s as i32)
    .collect();
    assert_eq!(numbers, [0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(pb::FileState::Released.as_str_name(), "FILE_STATE_RELEASED");
}

#[test]
fn recall_event_carries_one_of_progress_or_result() {
    let event = pb::RecallEvent {
        event: Some(pb::recall_event::Event::Result(pb::RecallResult {
            files: 2,
            bytes: 10,
            failures: vec![pb::RecallFailure {
                path: "a/b.jpg".into(),
                error: "checksum mismatch".into(),
            }],
            failed: 1,
            ..Default::default()
        })),
    };
    let bytes = event.encode_to_vec();
    // Field 2 (result), length-delimited.
    assert_eq!(bytes[0], (2 << 3) | 2);
    assert_eq!(pb::RecallEvent::decode(bytes.as_slice()).unwrap(), event);
}

#[test]
fn catalog_info_fields_are_optional() {
    // Unset and zero are different answers: a term of 0 is still a term.
    let unset = pb::CatalogInfo::default();
    assert!(unset.encode_to_vec().is_empty());
    let zero = pb::CatalogInfo {
        term: Some(0),
        ..Default::default()
    };
    assert_eq!(zero.encode_to_vec(), [2 << 3, 0]);
}

#[test]
fn the_service_is_strata_v1_tiering() {
    assert_eq!(pb::tiering_server::SERVICE_NAME, "strata.v1.Tiering");
}
