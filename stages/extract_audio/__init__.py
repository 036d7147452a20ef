"""extract-audio (VideoSearcher ffmpeg-0): the input's audio track as 16 kHz mono WAV."""
