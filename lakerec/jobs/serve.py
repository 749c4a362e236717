"""Serve the recommender over HTTP: MLflow's scoring server on the registered model, loopback by default.

    python -m lakerec.jobs.serve [--conf PATH] [--lake DIR] [--model-uri URI] [--host 127.0.0.1] [--port 5000]
        [--index exact|hnsw] [--serve-workers N]

    curl -s http://127.0.0.1:5000/invocations -H 'Content-Type: application/json' \\
         -d '{"dataframe_records": [{"user_id": 100274}], "params": {"k": 3}}'

The model defaults to the `champion` of --registered-recommender (the version
`python -m lakerec.jobs.recommend` registers from the champion two-tower and ranker); --index hnsw answers from the approximate
index instead of the exact one (lakerec.serving.index). Runs until interrupted (Ctrl-C or
SIGTERM, which stop the server with it).
"""

from __future__ import annotations

import json
import signal
import sys

from lakerec import cli


def main(argv: list[str] | None = None) -> None:
    p = cli.parser("serve", "Serve the recommender model over HTTP (MLflow's scoring server).",
                   ("mlflow.registered_recommender", "serve.host", "serve.port", "serve.index", "serve.workers"))
    p.add_argument("--model-uri", help="the recommender to serve (default: the registered recommender's champion)")
    args = p.parse_args(argv)

    def body():
        from lakerec.retrieval import tracking
        from lakerec.serving import server
        from lakerec.serving.recommender import INDEX_SETTINGS

        cfg = cli.config_from_args(args)
        tracking.configure(cfg)
        uri = args.model_uri or server.default_model_uri(cfg)
        index = {k: getattr(cfg.serve, k) for k in INDEX_SETTINGS}  # the model_config keys the model takes
        running = server.start(cfg, uri, index)
        print(f"serving {uri} on {running.url} (index {cfg.serve.index}); try:\n"
              f"  curl -s {running.url}/invocations -H 'Content-Type: application/json' "
              f"-d '{json.dumps({'dataframe_records': [{'user_id': 1}], 'params': {'k': 3}})}'", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a kill stops the server too (finally below)
        try:
            running.process.wait()
        except KeyboardInterrupt:
            pass
        finally:
            running.stop()

    cli.run_main("serve", body)


if __name__ == "__main__":
    main()
