"""RunPod serverless: the client, its wire models and the TTS handler contract."""
