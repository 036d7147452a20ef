"""cut-clips (VideoSearcher ffmpeg-1): one frame-accurate, re-encoded clip per segment."""
