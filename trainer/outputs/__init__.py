"""What a run directory holds and how it travels: timm's config.json and the model card, run_info.json, the
curves of metrics.jsonl, and the upload to the Hugging Face Hub."""
