"""segment-speech (VideoSearcher librosa): sentence timestamps from loudness drops in a WAV."""
