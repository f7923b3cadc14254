-- wrk: POST /token grant_type=client_credentials with client_secret_basic.
-- env: BENCH_BASIC (base64 of id:secret), BENCH_BODY (the form body).
wrk.method = "POST"
wrk.headers["Authorization"] = "Basic " .. assert(os.getenv("BENCH_BASIC"), "BENCH_BASIC")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = assert(os.getenv("BENCH_BODY"), "BENCH_BODY")
