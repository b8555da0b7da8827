"""AI feedback at scale: generation, LLM-as-judge, constitution critique/revision and CLAIR revisions
over any OpenAI-compatible server (OpenAI, vLLM, llama.cpp, Ollama, TGI). See docs/ai-labelling.md."""
