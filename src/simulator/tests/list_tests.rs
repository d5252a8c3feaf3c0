//! Tests of ListCIMG: answer shape, name filter, paging and errno 1 cases.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::{client, import_one, is_hex32, list, start};
use crate::simulator::LIST_PATH;

/// Keys of a ListCIMG item while its job runs.
const ITEM_KEYS: [&str; 12] = [
    "cimgUuid",
    "createTime",
    "description",
    "isShared",
    "job",
    "name",
    "osFamily",
    "osVersion",
    "platform",
    "regions",
    "size",
    "status",
];

fn names_of(envelope: &Value) -> Vec<String> {
    envelope["data"]["items"]
        .as_array()
        .expect("items is an array")
        .iter()
        .map(|item| item["name"].as_str().expect("name is a string").to_string())
        .collect()
}

#[tokio::test]
async fn list_answers_an_object_with_count_and_documented_items() {
    let sim = start().await;
    let mut jobs = Vec::new();
    for name in ["first", "second", "third"] {
        jobs.push(import_one(&sim, "gz", name).await);
    }
    import_one(&sim, "bj", "elsewhere").await;
    let envelope = list(&sim, &json!({"regionId": "gz", "start": 0, "limit": 10})).await;
    assert_eq!(envelope["errno"], 0, "{envelope}");
    assert_eq!(envelope["data"]["count"], 3, "only images of the region");
    let items = envelope["data"]["items"]
        .as_array()
        .expect("items is an array");
    for (item, job) in items.iter().zip(&jobs) {
        let keys: BTreeSet<&str> = item
            .as_object()
            .expect("object")
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(keys, ITEM_KEYS.into_iter().collect(), "{item}");
        assert_eq!(item["cimgUuid"], job["resourceUuid"]);
        assert!(is_hex32(&item["cimgUuid"]));
        assert!(
            item["createTime"].is_u64(),
            "createTime is an integer: {item}"
        );
        assert_eq!(item["status"], "Importing");
        assert_eq!(item["regions"], json!(["gz"]));
        assert_eq!(item["isShared"], false);
        assert_eq!(
            (item["osFamily"].as_str(), item["osVersion"].as_str()),
            (Some("CentOS"), Some("7.6"))
        );
        assert_eq!(item["platform"], "Linux");
        assert_eq!(item["size"], 20);
        assert_eq!(item["job"]["jobUuid"], job["jobUuid"]);
        assert_eq!(item["job"]["done"], false);
        assert_eq!(item["job"]["type"], "ImportCIMG");
    }
    let times: Vec<u64> = items
        .iter()
        .filter_map(|i| i["createTime"].as_u64())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "sorted by createTime: {times:?}"
    );
    assert_eq!(names_of(&envelope), ["first", "second", "third"]);
}

#[tokio::test]
async fn list_filters_by_exact_names_and_pages_by_start_and_limit() {
    let sim = start().await;
    for name in ["a", "b", "a", "c", "a-longer"] {
        import_one(&sim, "gz", name).await;
    }
    let cases = [
        (
            "one name matches exactly",
            json!({"names": ["a"]}),
            0,
            10,
            2,
            vec!["a", "a"],
        ),
        (
            "two names",
            json!({"names": ["a", "c"]}),
            0,
            10,
            3,
            vec!["a", "a", "c"],
        ),
        ("unknown name", json!({"names": ["zz"]}), 0, 10, 0, vec![]),
        (
            "empty names means all",
            json!({"names": []}),
            0,
            10,
            5,
            vec!["a", "b", "a", "c", "a-longer"],
        ),
        (
            "null condition means all",
            Value::Null,
            0,
            10,
            5,
            vec!["a", "b", "a", "c", "a-longer"],
        ),
        ("first page", json!({}), 0, 2, 5, vec!["a", "b"]),
        ("second page", json!({}), 2, 2, 5, vec!["a", "c"]),
        ("last partial page", json!({}), 4, 2, 5, vec!["a-longer"]),
        ("past the end", json!({}), 10, 2, 5, vec![]),
        (
            "filtered second page",
            json!({"names": ["a", "c"]}),
            1,
            1,
            3,
            vec!["a"],
        ),
    ];
    for (case, condition, start, limit, count, names) in cases {
        let body =
            json!({"regionId": "gz", "start": start, "limit": limit, "condition": condition});
        let envelope = list(&sim, &body).await;
        assert_eq!(envelope["errno"], 0, "{case}: {envelope}");
        assert_eq!(envelope["data"]["count"], count, "{case}");
        assert_eq!(names_of(&envelope), names, "{case}");
    }
}

#[tokio::test]
async fn list_rejects_invalid_requests_with_errno_1() {
    let cases = [
        (
            "limit zero",
            json!({"regionId": "gz", "start": 0, "limit": 0}).to_string(),
        ),
        (
            "limit over 1000",
            json!({"regionId": "gz", "start": 0, "limit": 1001}).to_string(),
        ),
        (
            "limit missing",
            json!({"regionId": "gz", "start": 0}).to_string(),
        ),
        (
            "limit a string",
            json!({"regionId": "gz", "start": 0, "limit": "10"}).to_string(),
        ),
        (
            "start missing",
            json!({"regionId": "gz", "limit": 10}).to_string(),
        ),
        (
            "start negative",
            json!({"regionId": "gz", "start": -1, "limit": 10}).to_string(),
        ),
        (
            "regionId missing",
            json!({"start": 0, "limit": 10}).to_string(),
        ),
        (
            "names not an array",
            json!({"regionId": "gz", "start": 0, "limit": 10, "condition": {"names": "a"}})
                .to_string(),
        ),
        (
            "names not strings",
            json!({"regionId": "gz", "start": 0, "limit": 10, "condition": {"names": [1]}})
                .to_string(),
        ),
        ("body not json", "{".to_string()),
    ];
    let sim = start().await;
    for (case, body) in cases {
        let reply = client(&sim).post(LIST_PATH, &body).await;
        assert_eq!(reply.status, 200, "{case}");
        assert_eq!(reply.json()["errno"], 1, "{case}: {}", reply.text());
    }
    let largest = list(&sim, &json!({"regionId": "gz", "start": 0, "limit": 1000})).await;
    assert_eq!(largest["errno"], 0, "limit 1000 is allowed");
}
