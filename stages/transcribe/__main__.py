from base.runtime import serve
from stages.transcribe.handler import FUNCTION

if __name__ == "__main__":
    serve(FUNCTION)
