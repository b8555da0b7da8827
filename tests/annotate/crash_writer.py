"""A writer for the crash test: appends judgements forever, printing each id only after `append`
has returned (the acknowledgement). The test kills it with SIGKILL at random moments."""

import sys

from prefkit.annotate.store import Store

from tests.support.factories import pairwise, prompt, response

store = Store(sys.argv[1])
p = prompt("crash")
a, b = response(p, "a"), response(p, "b")
i = 0
while True:
    j = pairwise(p, a, b, rationale="x" * (i % 5000))
    store.append("judgements", [j])
    print(j.judgement_id, flush=True)
    i += 1
