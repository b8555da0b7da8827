"""A scripted 'model' for the loopback OpenAI server in end-to-end tests and the docs tests.

It is no model and claims to be none: judges prefer the longer response, rubric scores are a fixed hash
of what is scored, the CLAIR reviser adds one word, capability probes get `{"ok": true}`, and
anything else (generation, critiques, constitutional rewrites) gets a short answer that names its
prompt and seed, so samples with different seeds differ."""

from __future__ import annotations

import json

from tests.support.openai_server import Reply


def answer(request: dict):
    text = request["messages"][-1]["content"]
    schema = (request.get("response_format") or {}).get("json_schema", {}).get("name")
    if schema == "probe" or '{"ok": true}' in text:
        return '{"ok": true}'
    if schema == "score" or '"Score: <number>"' in text:
        score = 1 + sum(map(ord, text)) % 5  # arbitrary but fixed per text, so candidates differ
        if schema == "score":
            return json.dumps({"reason": "scripted: a hash of the text", "score": score})
        return f"A scripted score.\nScore: {score}"
    if schema == "ranking":
        n = text.count("[Response ")
        return json.dumps({"reason": "scripted: in the order shown", "ranking": list(range(1, n + 1))})
    if "[Response to improve]" in text:
        original = text.split("[Response to improve]\n")[1].split("\n\nFirst explain")[0]
        revision = f"{original} Clearly."
        if schema == "revision":
            return json.dumps({"reasoning": "One word makes it clearer.", "revision": revision})
        return f"One word makes it clearer.<revision>{revision}</revision>"
    if "[Response A]" in text:
        a = text.split("[Response A]\n")[1].split("\n\n[Response B]")[0]
        b = text.split("[Response B]\n")[1]
        verdict, other = ("A", "B") if len(a) >= len(b) else ("B", "A")
        if schema == "verdict":
            return json.dumps({"reason": "scripted: longer", "verdict": verdict})
        return Reply(f"{verdict}\nlonger", top_logprobs={verdict: -0.05, other: -3.0, "tie": -6.0})
    return f"A generated answer (sample seed {request.get('seed')}) about: {text[:60]}"
