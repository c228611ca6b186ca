//! Resources that answer 405 Method Not Allowed, with `Allow`, to a method they do not have
//! (RFC 9110 §15.5.6). actix's `route(path, web::post()…)` puts the method guard on a resource of
//! its own, so any other method on a known path fell through to the app's 404 (schemathesis
//! found it: a TRACE answered 404).

use actix_web::http::{header, Method};
use actix_web::{web, HttpResponse, Resource, Route};

/// A resource at `path` with `routes`, each given with the method its guard accepts.
pub fn resource(path: &str, routes: Vec<(Method, Route)>) -> Resource {
    let allow = routes
        .iter()
        .map(|(m, _)| m.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let mut resource = web::resource(path);
    for (_, route) in routes {
        resource = resource.route(route);
    }
    resource.default_service(web::to(move || {
        let allow = allow.clone();
        async move { method_not_allowed(&allow) }
    }))
}

fn method_not_allowed(allow: &str) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, allow.to_owned()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "error": "method_not_allowed",
            "error_description": format!("this resource allows {allow}"),
        }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{test, App};

    #[actix_web::test]
    async fn another_method_is_a_405_naming_the_allowed_ones_and_the_routes_still_answer() {
        let app = test::init_service(App::new().service(resource(
            "/things",
            vec![
                (Method::GET, web::get().to(HttpResponse::Ok)),
                (Method::POST, web::post().to(HttpResponse::Created)),
            ],
        )))
        .await;
        let get = test::TestRequest::get().uri("/things").to_request();
        assert_eq!(test::call_service(&app, get).await.status(), 200);
        let post = test::TestRequest::post().uri("/things").to_request();
        assert_eq!(test::call_service(&app, post).await.status(), 201);
        for method in [Method::TRACE, Method::PUT, Method::DELETE] {
            let req = test::TestRequest::default()
                .method(method.clone())
                .uri("/things")
                .to_request();
            let res = test::call_service(&app, req).await;
            assert_eq!(res.status(), 405, "{method}");
            assert_eq!(res.headers().get(header::ALLOW).unwrap(), "GET, POST");
        }
        let other = test::TestRequest::get().uri("/other").to_request();
        assert_eq!(test::call_service(&app, other).await.status(), 404);
    }
}
