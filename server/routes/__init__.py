"""HTTP routes, one file each. Handlers delegate to vLLM's OpenAI serving objects in
`app.state` (set up by the lifespan), so responses match vLLM's server field for field."""
