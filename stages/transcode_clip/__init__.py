"""transcode-clip (VideoSearcher ffmpeg-2): a small mp4 and a 16 kHz mono WAV of one clip."""
