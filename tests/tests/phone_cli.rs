//! The `fieldsync` CLI as a cadre uses it (issue 13), as a real binary against a real
//! server: refusals before anything is saved (a household before the first sync, a typo,
//! an impossible location, a text file as a photo, a HEIC photo), each in both languages;
//! the whole visit form from flags (type, the five content sections, 宣讲政策, the
//! 两不愁三保障 + 饮水安全 checklist); a return by the supervisor; and `visit fix` changing the
//! named field and the checklist and replacing the photo.

use std::path::Path;

use fieldsync_proto::v1;
use fieldsync_tests::{
    DEMO_PASSWORD, TestServer, authorized, cli_binary, command_without_fieldsync_environment,
    test_photo,
};

/// Run the CLI on `data_dir` against `server`; (exit success, stdout + stderr).
async fn cli(server: &TestServer, data_dir: &Path, arguments: &[&str]) -> (bool, String) {
    let binary = cli_binary();
    let mut command = command_without_fieldsync_environment(&binary);
    command
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--server")
        .arg(server.url())
        .args(arguments)
        .env("FIELDSYNC_PASSWORD", DEMO_PASSWORD);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run the CLI");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// The CLI's run must fail and its output contain every one of `parts`.
fn refused(result: (bool, String), parts: &[&str]) {
    let (success, text) = result;
    assert!(!success, "expected a refusal:\n{text}");
    for part in parts {
        assert!(text.contains(part), "{part:?} missing from:\n{text}");
    }
}

fn succeeded(result: (bool, String)) -> String {
    let (success, text) = result;
    assert!(success, "the CLI failed:\n{text}");
    text
}

/// The value after `label` on the line that has it.
fn value_after(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|line| {
            line.split_once(label)
                .map(|(_, rest)| rest.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no {label:?} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_refuses_bad_input_records_the_whole_form_and_fixes_a_returned_visit() {
    let server = TestServer::start().await;
    let phone = tempfile::tempdir().expect("temp dir");
    let data_dir = phone.path().join("phone");
    let scratch = tempfile::tempdir().expect("temp dir");

    // Before the first sync a household cannot be checked: refused, saying why.
    refused(
        cli(
            &server,
            &data_dir,
            &[
                "visit",
                "new",
                "zzzz",
                "--mode",
                "in-person",
                "--situation",
                "户主在家，身体尚可",
            ],
        )
        .await,
        &["尚未下载帮扶对象", "sync once"],
    );
    succeeded(cli(&server, &data_dir, &["login", "cadre01"]).await);
    succeeded(cli(&server, &data_dir, &["sync"]).await);
    let households = succeeded(cli(&server, &data_dir, &["households"]).await);
    let household_id = households
        .lines()
        .nth(1)
        .and_then(|line| line.split_whitespace().next())
        .expect("a household row")
        .to_owned();

    let new_visit = |extra: &[&str]| {
        let mut arguments = vec![
            "visit",
            "new",
            "HOUSEHOLD",
            "--mode",
            "in-person",
            "--situation",
            "户主在家，秋粮已收，老人身体尚可。",
        ];
        arguments.extend_from_slice(extra);
        arguments
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<String>>()
    };
    let run = |arguments: Vec<String>, household: &str| {
        let arguments: Vec<String> = arguments
            .into_iter()
            .map(|argument| {
                if argument == "HOUSEHOLD" {
                    household.to_owned()
                } else {
                    argument
                }
            })
            .collect();
        let server = &server;
        let data_dir = data_dir.clone();
        async move {
            let borrowed: Vec<&str> = arguments.iter().map(String::as_str).collect();
            cli(server, &data_dir, &borrowed).await
        }
    };

    // Each refusal names the problem in Chinese and in English; nothing is saved.
    refused(
        run(new_visit(&[]), "zzzz").await,
        &["未找到帮扶户", "unknown household"],
    );
    refused(
        run(new_visit(&["--lat", "95", "--lon", "106.7"]), &household_id).await,
        &["定位坐标无效", "impossible location"],
    );
    refused(
        run(
            new_visit(&["--lat", "26.5", "--lon", "106.7", "--accuracy", "-3"]),
            &household_id,
        )
        .await,
        &["定位精度无效", "non-negative"],
    );
    refused(
        run(new_visit(&["--duration-min", "1500"]), &household_id).await,
        &["走访时长", "limit"],
    );
    let text_file = scratch.path().join("notes.jpg");
    std::fs::write(&text_file, "这不是照片").expect("write");
    refused(
        run(
            new_visit(&["--photo", &text_file.to_string_lossy()]),
            &household_id,
        )
        .await,
        &["不是图片", "is not a photo"],
    );
    let heic = scratch.path().join("camera.heic");
    std::fs::write(&heic, b"\0\0\0\x18ftypheic\0\0\0\0mif1heic").expect("write");
    refused(
        run(
            new_visit(&["--photo", &heic.to_string_lossy()]),
            &household_id,
        )
        .await,
        &["HEIC", "convert it to JPEG"],
    );
    let visits = succeeded(cli(&server, &data_dir, &["visits"]).await);
    assert!(
        visits.contains("暂无走访记录"),
        "nothing was saved:\n{visits}"
    );

    // The whole form from flags, with a household prefix.
    let photo = test_photo("gps_DSCN0010.jpg");
    let saved = succeeded(
        run(
            new_visit(&[
                "--type",
                "policy-briefing",
                "--plan-progress",
                "鸡苗已发放",
                "--problems",
                "缺劳力",
                "--actions",
                "联系公益岗位",
                "--needs",
                "技能培训",
                "--policy",
                "医疗保障",
                "--policy",
                "雨露计划",
                "--check",
                "food=ok",
                "--check",
                "clothing=ok",
                "--check",
                "housing=fail:危房C级",
                "--lat",
                "26.58",
                "--lon",
                "106.71",
                "--photo",
                &photo.to_string_lossy(),
            ]),
            &household_id[..12],
        )
        .await,
    );
    let visit_id = value_after(&saved, "visit saved:");
    let shown = succeeded(cli(&server, &data_dir, &["visit", "show", &visit_id[..13]]).await);
    for part in [
        "政策宣讲",
        "帮扶计划实施情况: 鸡苗已发放",
        "农户需求: 技能培训",
        "医疗保障、雨露计划",
        "不愁吃: 达标 ok",
        "住房安全有保障: 不达标 fail",
        "饮水安全有保障: 未核查 not checked",
        "住房安全有保障：危房C级",
        "照片1 ",
    ] {
        assert!(shown.contains(part), "{part:?} missing from:\n{shown}");
    }
    succeeded(cli(&server, &data_dir, &["sync"]).await);

    // The supervisor returns it: the photo and the water check must be redone.
    let (supervisor, mut review) = server.review_as("township1").await;
    let detail = review
        .get_visit(authorized(
            v1::GetVisitRequest {
                visit_id: visit_id.clone(),
            },
            &supervisor,
        ))
        .await
        .expect("get visit")
        .into_inner();
    let first_photos = detail.visit.as_ref().expect("visit").photo_ids.clone();
    review
        .decide(authorized(
            v1::DecideRequest {
                visit_id: visit_id.clone(),
                revision: 1,
                content_hash: detail.content_hash,
                decision: v1::Decision::Return as i32,
                reasons: vec![
                    v1::ReturnReason {
                        code: "photo_unclear".into(),
                        field: "photo_ids".into(),
                    },
                    v1::ReturnReason {
                        code: "other".into(),
                        field: "wellbeing".into(),
                    },
                ],
                note: "请重拍照片，补查饮水".into(),
                deadline: String::new(),
            },
            &supervisor,
        ))
        .await
        .expect("return");
    succeeded(cli(&server, &data_dir, &["sync"]).await);
    let tasks = succeeded(cli(&server, &data_dir, &["tasks"]).await);
    assert!(
        tasks.contains("两不愁三保障") && tasks.contains("走访照片"),
        "{tasks}"
    );

    let retaken = test_photo("Canon_40D.jpg");
    let fixed = succeeded(
        cli(
            &server,
            &data_dir,
            &[
                "visit",
                "fix",
                &visit_id,
                "--check",
                "water=ok",
                "--replace-photo",
                &format!("1={}", retaken.to_string_lossy()),
            ],
        )
        .await,
    );
    assert!(fixed.contains("第2版"), "{fixed}");
    succeeded(cli(&server, &data_dir, &["sync"]).await);

    let detail = review
        .get_visit(authorized(
            v1::GetVisitRequest {
                visit_id: visit_id.clone(),
            },
            &supervisor,
        ))
        .await
        .expect("get visit")
        .into_inner();
    let visit = detail.visit.expect("visit");
    assert_eq!((visit.revision, visit.supersedes_revision), (2, 1));
    assert_eq!(visit.photo_ids.len(), 1);
    assert!(!first_photos.contains(&visit.photo_ids[0]), "replaced");
    assert!(
        detail.photo_ids_received.contains(&visit.photo_ids[0]),
        "the new photo's bytes arrived"
    );
    let wellbeing = visit.wellbeing.expect("checklist");
    assert_eq!(wellbeing.drinking_water, v1::CheckResult::Pass as i32);
    assert_eq!(wellbeing.housing_safety, v1::CheckResult::Fail as i32);
    assert_eq!(
        wellbeing.note, "住房安全有保障：危房C级",
        "the note is kept"
    );
    assert_eq!(visit.policies_explained, vec!["医疗保障", "雨露计划"]);
    assert_eq!(visit.r#type, v1::VisitType::PolicyBriefing as i32);
}
