"""transcribe (VideoSearcher deepspeech): faster-whisper speech-to-text with word timestamps."""
