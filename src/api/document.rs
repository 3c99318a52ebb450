//! The OpenAPI document's common answers: every status the middleware and extractors can give
//! (a malformed request, a missing token, a body that is too large, too slow or of another
//! type, a rate limit, an internal error) is declared on every operation it can reach, in the
//! one error shape, so that a client generated from the document (or a fuzzer) meets no
//! undeclared status.

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::{OpenApi, Ref, RefOr, ResponseBuilder};

/// Add the common answers each operation lacks, and bound every `limit` parameter by
/// `max_page_size` (the server refuses 0 and anything above it).
pub fn add_common_responses(openapi: &mut OpenApi, max_page_size: u32) {
    for (path, item) in openapi.paths.paths.iter_mut() {
        let has_path_params = path.contains('{');
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            add_to(operation, has_path_params);
            bound_limit(operation, max_page_size);
        }
    }
}

fn bound_limit(operation: &mut Operation, max_page_size: u32) {
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    for parameter in operation.parameters.iter_mut().flatten() {
        if parameter.name == "limit" {
            parameter.schema = Some(RefOr::T(Schema::Object(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(max_page_size))
                    .build(),
            )));
        }
    }
}

fn add_to(operation: &mut Operation, has_path_params: bool) {
    let secured = operation.security.is_some();
    let has_body = operation.request_body.is_some();
    let mut statuses = vec![
        ("400", "Malformed request: JSON, path or query"),
        ("422", "Well-formed but invalid input"),
        ("429", "Too many requests"),
        ("500", "Internal error"),
    ];
    if secured {
        statuses.push(("401", "Missing, unknown or expired bearer token"));
    }
    if has_path_params {
        statuses.push(("404", "Not found (or another tenant's)"));
    }
    if has_body {
        statuses.push(("408", "The body stopped arriving or came too slowly"));
        statuses.push(("413", "The body is larger than the limit"));
        statuses.push(("415", "A content type the operation does not take"));
        statuses.push((
            "409",
            "A conflict with the current state (a taken name or phone)",
        ));
    }
    for (status, description) in statuses {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| {
                RefOr::T(
                    ResponseBuilder::new()
                        .description(description)
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("ErrorBody")))
                                .build(),
                        )
                        .build(),
                )
            });
    }
}
