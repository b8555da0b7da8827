"""A scripted 'model' for the loopback OpenAI server in end-to-end tests and the docs tests.

It is no model and claims to be none: judges prefer the longer response, the CLAIR reviser adds one
word, capability probes get `{"ok": true}`, and anything else (generation) gets a short answer that
names its prompt and seed, so samples with different seeds differ."""

from __future__ import annotations

from tests.support.openai_server import Reply


def answer(request: dict):
    text = request["messages"][-1]["content"]
    if "[Response to improve]" in text:
        original = text.split("[Response to improve]\n")[1].split("\n\nFirst explain")[0]
        return f"One word makes it clearer.<revision>{original} Clearly.</revision>"
    if "[Response A]" in text:
        a = text.split("[Response A]\n")[1].split("\n\n[Response B]")[0]
        b = text.split("[Response B]\n")[1]
        verdict, other = ("A", "B") if len(a) >= len(b) else ("B", "A")
        return Reply(f"{verdict}\nlonger", top_logprobs={verdict: -0.05, other: -3.0, "tie": -6.0})
    if '{"ok": true}' in text:
        return '{"ok": true}'
    return f"A generated answer (sample seed {request.get('seed')}) about: {text[:60]}"
