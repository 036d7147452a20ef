from base.runtime import serve
from orchestrator.handler import FUNCTION

if __name__ == "__main__":
    serve(FUNCTION)
