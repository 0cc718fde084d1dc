//! Household search (农户检索) over real HTTP against a real server with the demo county: the
//! header's search page and its JSON twin find households by name, 户编号 and ID-number
//! digits inside the caller's area only, and never show a whole ID number, whatever was
//! typed to find it.

use fieldsync_server::demo::DEMO_COUNTY_ID;
use fieldsync_server::store::PairingFilter;
use fieldsync_tests::{TestServer, console_login};
use reqwest::StatusCode;
use serde_json::Value;

/// A household of the township supervised by `supervisor`, with a member holding an ID
/// number: (household id, head's name, 户编号, a member's ID number).
async fn household_of(server: &TestServer, supervisor: &str) -> (String, String, String, String) {
    let store = &server.state.store;
    let township_id = store
        .find_user_by_username(supervisor)
        .await
        .expect("store")
        .expect("demo supervisor")
        .area_id;
    let rows = store
        .pairing_households(
            DEMO_COUNTY_ID,
            PairingFilter {
                township_id: Some(township_id),
                limit: 10_000,
                ..Default::default()
            },
        )
        .await
        .expect("store");
    for row in rows {
        let household = store
            .get_household(&row.household_id)
            .await
            .expect("store")
            .expect("household");
        if let Some(member) = household
            .current_members()
            .find(|member| member.id_number.len() == 18)
        {
            return (
                household.household_id.clone(),
                household.head_name.clone(),
                household.national_household_number.clone(),
                member.id_number.clone(),
            );
        }
    }
    panic!("no household with an ID number in {supervisor}'s township");
}

async fn search_json(
    browser: &reqwest::Client,
    server: &TestServer,
    q: &str,
) -> (StatusCode, Value) {
    let response = browser
        .get(format!("{}/console/api/search", server.url()))
        .query(&[("q", q)])
        .send()
        .await
        .expect("search");
    let status = response.status();
    (status, response.json().await.expect("JSON"))
}

async fn search_page(
    browser: &reqwest::Client,
    server: &TestServer,
    q: &str,
) -> (StatusCode, String) {
    let response = browser
        .get(format!("{}/console/search", server.url()))
        .query(&[("q", q)])
        .send()
        .await
        .expect("search page");
    let status = response.status();
    (status, response.text().await.expect("page"))
}

fn household_ids(answer: &Value) -> Vec<String> {
    answer["households"]
        .as_array()
        .expect("households")
        .iter()
        .map(|hit| hit["household_id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn search_stays_in_the_callers_area_and_masks_id_numbers() {
    let server = TestServer::start().await;
    let (own_id, own_head, own_number, own_id_number) = household_of(&server, "township1").await;
    let (other_id, _, other_number, other_id_number) = household_of(&server, "township2").await;
    let township1 = console_login(&server, "township1").await;
    let township2 = console_login(&server, "township2").await;
    let county = console_login(&server, "county").await;

    // By name: the supervisor's own household, with a link on the page.
    let (status, answer) = search_json(&township1, &server, &own_head).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(household_ids(&answer).contains(&own_id), "{answer}");
    let (status, page) = search_page(&township1, &server, &own_head).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(&format!("href=\"/console/households/{own_id}\"")));
    assert!(
        page.contains("form class=\"search\""),
        "the header's search box"
    );

    // By 户编号 and by the whole ID number: only inside the area, found by the county.
    for query in [&other_number, &other_id_number] {
        let (status, answer) = search_json(&township1, &server, query).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            !household_ids(&answer).contains(&other_id),
            "township2's household is not found by township1 ({query})"
        );
        let (_, page) = search_page(&township1, &server, query).await;
        assert!(!page.contains(&other_id), "not even as a link");
        for browser in [&township2, &county] {
            let (_, answer) = search_json(browser, &server, query).await;
            assert!(
                household_ids(&answer).contains(&other_id),
                "{query}: {answer}"
            );
        }
    }
    let (_, answer) = search_json(&township1, &server, &own_number).await;
    assert_eq!(
        household_ids(&answer),
        std::slice::from_ref(&own_id),
        "a 户编号 is unique"
    );

    // By the whole ID number or its last six: the answer shows the number masked, never whole.
    let masked = fieldsync_model::id_number::mask(&own_id_number);
    for query in [own_id_number.clone(), own_id_number[12..].to_owned()] {
        let (status, answer) = search_json(&township1, &server, &query).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            household_ids(&answer).contains(&own_id),
            "{query}: {answer}"
        );
        let text = answer.to_string();
        assert!(
            !text.contains(&own_id_number[6..14]),
            "the birth date digits never leave the server: {text}"
        );
        assert!(text.contains(&masked), "{text}");
        let (_, page) = search_page(&township1, &server, &query).await;
        let body = &page[page.find("id=\"search-results\"").expect("results")..];
        assert!(!body.contains(&own_id_number[6..14]), "{body}");
        assert!(body.contains(&masked));
    }

    // A query that cannot be read is a 400 naming the box; other roles get no search.
    let (status, answer) = search_json(&township1, &server, "12").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer.to_string().contains("4"), "{answer}");
    let (status, page) = search_page(&township1, &server, "12").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("数字至少输入"), "{page}");
    let cadre = console_login(&server, "cadre01").await;
    let (status, _) = search_json(&cadre, &server, &own_head).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
