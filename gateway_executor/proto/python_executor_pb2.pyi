import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import wrappers_pb2 as _wrappers_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HeaderProcessingMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEADER_PROCESSING_MODE_UNSPECIFIED: _ClassVar[HeaderProcessingMode]
    HEADER_PROCESSING_MODE_SKIP: _ClassVar[HeaderProcessingMode]
    HEADER_PROCESSING_MODE_PROCESS: _ClassVar[HeaderProcessingMode]

class BodyProcessingMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BODY_PROCESSING_MODE_UNSPECIFIED: _ClassVar[BodyProcessingMode]
    BODY_PROCESSING_MODE_SKIP: _ClassVar[BodyProcessingMode]
    BODY_PROCESSING_MODE_BUFFER: _ClassVar[BodyProcessingMode]
    BODY_PROCESSING_MODE_STREAM: _ClassVar[BodyProcessingMode]

class Phase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PHASE_UNSPECIFIED: _ClassVar[Phase]
    PHASE_REQUEST_HEADERS: _ClassVar[Phase]
    PHASE_REQUEST_BODY: _ClassVar[Phase]
    PHASE_RESPONSE_HEADERS: _ClassVar[Phase]
    PHASE_RESPONSE_BODY: _ClassVar[Phase]
    PHASE_NEEDS_MORE_REQUEST_DATA: _ClassVar[Phase]
    PHASE_REQUEST_BODY_CHUNK: _ClassVar[Phase]
    PHASE_NEEDS_MORE_RESPONSE_DATA: _ClassVar[Phase]
    PHASE_RESPONSE_BODY_CHUNK: _ClassVar[Phase]
    PHASE_CANCEL: _ClassVar[Phase]

class DropHeaderActionType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DROP_HEADER_ACTION_TYPE_UNSPECIFIED: _ClassVar[DropHeaderActionType]
    DROP_HEADER_ACTION_TYPE_ALLOW: _ClassVar[DropHeaderActionType]
    DROP_HEADER_ACTION_TYPE_DENY: _ClassVar[DropHeaderActionType]
HEADER_PROCESSING_MODE_UNSPECIFIED: HeaderProcessingMode
HEADER_PROCESSING_MODE_SKIP: HeaderProcessingMode
HEADER_PROCESSING_MODE_PROCESS: HeaderProcessingMode
BODY_PROCESSING_MODE_UNSPECIFIED: BodyProcessingMode
BODY_PROCESSING_MODE_SKIP: BodyProcessingMode
BODY_PROCESSING_MODE_BUFFER: BodyProcessingMode
BODY_PROCESSING_MODE_STREAM: BodyProcessingMode
PHASE_UNSPECIFIED: Phase
PHASE_REQUEST_HEADERS: Phase
PHASE_REQUEST_BODY: Phase
PHASE_RESPONSE_HEADERS: Phase
PHASE_RESPONSE_BODY: Phase
PHASE_NEEDS_MORE_REQUEST_DATA: Phase
PHASE_REQUEST_BODY_CHUNK: Phase
PHASE_NEEDS_MORE_RESPONSE_DATA: Phase
PHASE_RESPONSE_BODY_CHUNK: Phase
PHASE_CANCEL: Phase
DROP_HEADER_ACTION_TYPE_UNSPECIFIED: DropHeaderActionType
DROP_HEADER_ACTION_TYPE_ALLOW: DropHeaderActionType
DROP_HEADER_ACTION_TYPE_DENY: DropHeaderActionType

class StreamRequest(_message.Message):
    __slots__ = ("request_id", "instance_id", "policy_name", "policy_version", "params", "shared_context", "execution_metadata", "request_headers", "request_body", "response_headers", "response_body", "needs_more_request_data", "request_chunk", "needs_more_response_data", "response_chunk", "cancel_execution")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    POLICY_NAME_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    SHARED_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_METADATA_FIELD_NUMBER: _ClassVar[int]
    REQUEST_HEADERS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_BODY_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_HEADERS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_BODY_FIELD_NUMBER: _ClassVar[int]
    NEEDS_MORE_REQUEST_DATA_FIELD_NUMBER: _ClassVar[int]
    REQUEST_CHUNK_FIELD_NUMBER: _ClassVar[int]
    NEEDS_MORE_RESPONSE_DATA_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_CHUNK_FIELD_NUMBER: _ClassVar[int]
    CANCEL_EXECUTION_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    instance_id: str
    policy_name: str
    policy_version: str
    params: _struct_pb2.Struct
    shared_context: SharedContext
    execution_metadata: ExecutionMetadata
    request_headers: RequestHeadersPayload
    request_body: RequestBodyPayload
    response_headers: ResponseHeadersPayload
    response_body: ResponseBodyPayload
    needs_more_request_data: NeedsMoreRequestDataPayload
    request_chunk: RequestChunkPayload
    needs_more_response_data: NeedsMoreResponseDataPayload
    response_chunk: ResponseChunkPayload
    cancel_execution: CancelExecutionPayload
    def __init__(self, request_id: _Optional[str] = ..., instance_id: _Optional[str] = ..., policy_name: _Optional[str] = ..., policy_version: _Optional[str] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., shared_context: _Optional[_Union[SharedContext, _Mapping]] = ..., execution_metadata: _Optional[_Union[ExecutionMetadata, _Mapping]] = ..., request_headers: _Optional[_Union[RequestHeadersPayload, _Mapping]] = ..., request_body: _Optional[_Union[RequestBodyPayload, _Mapping]] = ..., response_headers: _Optional[_Union[ResponseHeadersPayload, _Mapping]] = ..., response_body: _Optional[_Union[ResponseBodyPayload, _Mapping]] = ..., needs_more_request_data: _Optional[_Union[NeedsMoreRequestDataPayload, _Mapping]] = ..., request_chunk: _Optional[_Union[RequestChunkPayload, _Mapping]] = ..., needs_more_response_data: _Optional[_Union[NeedsMoreResponseDataPayload, _Mapping]] = ..., response_chunk: _Optional[_Union[ResponseChunkPayload, _Mapping]] = ..., cancel_execution: _Optional[_Union[CancelExecutionPayload, _Mapping]] = ...) -> None: ...

class StreamResponse(_message.Message):
    __slots__ = ("request_id", "updated_metadata", "request_header_action", "request_action", "response_header_action", "response_action", "needs_more_decision", "streaming_request_action", "streaming_response_action", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    UPDATED_METADATA_FIELD_NUMBER: _ClassVar[int]
    REQUEST_HEADER_ACTION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ACTION_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_HEADER_ACTION_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_ACTION_FIELD_NUMBER: _ClassVar[int]
    NEEDS_MORE_DECISION_FIELD_NUMBER: _ClassVar[int]
    STREAMING_REQUEST_ACTION_FIELD_NUMBER: _ClassVar[int]
    STREAMING_RESPONSE_ACTION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    updated_metadata: _struct_pb2.Struct
    request_header_action: RequestHeaderActionPayload
    request_action: RequestActionPayload
    response_header_action: ResponseHeaderActionPayload
    response_action: ResponseActionPayload
    needs_more_decision: NeedsMoreDecisionPayload
    streaming_request_action: StreamingRequestActionPayload
    streaming_response_action: StreamingResponseActionPayload
    error: ExecutionError
    def __init__(self, request_id: _Optional[str] = ..., updated_metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., request_header_action: _Optional[_Union[RequestHeaderActionPayload, _Mapping]] = ..., request_action: _Optional[_Union[RequestActionPayload, _Mapping]] = ..., response_header_action: _Optional[_Union[ResponseHeaderActionPayload, _Mapping]] = ..., response_action: _Optional[_Union[ResponseActionPayload, _Mapping]] = ..., needs_more_decision: _Optional[_Union[NeedsMoreDecisionPayload, _Mapping]] = ..., streaming_request_action: _Optional[_Union[StreamingRequestActionPayload, _Mapping]] = ..., streaming_response_action: _Optional[_Union[StreamingResponseActionPayload, _Mapping]] = ..., error: _Optional[_Union[ExecutionError, _Mapping]] = ...) -> None: ...

class ProcessingMode(_message.Message):
    __slots__ = ("request_header_mode", "request_body_mode", "response_header_mode", "response_body_mode")
    REQUEST_HEADER_MODE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_BODY_MODE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_HEADER_MODE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_BODY_MODE_FIELD_NUMBER: _ClassVar[int]
    request_header_mode: HeaderProcessingMode
    request_body_mode: BodyProcessingMode
    response_header_mode: HeaderProcessingMode
    response_body_mode: BodyProcessingMode
    def __init__(self, request_header_mode: _Optional[_Union[HeaderProcessingMode, str]] = ..., request_body_mode: _Optional[_Union[BodyProcessingMode, str]] = ..., response_header_mode: _Optional[_Union[HeaderProcessingMode, str]] = ..., response_body_mode: _Optional[_Union[BodyProcessingMode, str]] = ...) -> None: ...

class PolicyCapabilities(_message.Message):
    __slots__ = ("request_headers", "request_body", "response_headers", "response_body", "streaming_request", "streaming_response")
    REQUEST_HEADERS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_BODY_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_HEADERS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_BODY_FIELD_NUMBER: _ClassVar[int]
    STREAMING_REQUEST_FIELD_NUMBER: _ClassVar[int]
    STREAMING_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    request_headers: bool
    request_body: bool
    response_headers: bool
    response_body: bool
    streaming_request: bool
    streaming_response: bool
    def __init__(self, request_headers: _Optional[bool] = ..., request_body: _Optional[bool] = ..., response_headers: _Optional[bool] = ..., response_body: _Optional[bool] = ..., streaming_request: _Optional[bool] = ..., streaming_response: _Optional[bool] = ...) -> None: ...

class InitPolicyRequest(_message.Message):
    __slots__ = ("policy_name", "policy_version", "policy_metadata", "params")
    POLICY_NAME_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    POLICY_METADATA_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    policy_name: str
    policy_version: str
    policy_metadata: PolicyMetadata
    params: _struct_pb2.Struct
    def __init__(self, policy_name: _Optional[str] = ..., policy_version: _Optional[str] = ..., policy_metadata: _Optional[_Union[PolicyMetadata, _Mapping]] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class InitPolicyResponse(_message.Message):
    __slots__ = ("success", "instance_id", "error_message", "processing_mode", "capabilities")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_MODE_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    success: bool
    instance_id: str
    error_message: str
    processing_mode: ProcessingMode
    capabilities: PolicyCapabilities
    def __init__(self, success: _Optional[bool] = ..., instance_id: _Optional[str] = ..., error_message: _Optional[str] = ..., processing_mode: _Optional[_Union[ProcessingMode, _Mapping]] = ..., capabilities: _Optional[_Union[PolicyCapabilities, _Mapping]] = ...) -> None: ...

class DestroyPolicyRequest(_message.Message):
    __slots__ = ("instance_id",)
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    def __init__(self, instance_id: _Optional[str] = ...) -> None: ...

class DestroyPolicyResponse(_message.Message):
    __slots__ = ("success", "error_message")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    success: bool
    error_message: str
    def __init__(self, success: _Optional[bool] = ..., error_message: _Optional[str] = ...) -> None: ...

class ExecutionMetadata(_message.Message):
    __slots__ = ("phase", "deadline", "trace", "route_name")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    ROUTE_NAME_FIELD_NUMBER: _ClassVar[int]
    phase: Phase
    deadline: _timestamp_pb2.Timestamp
    trace: TraceMetadata
    route_name: str
    def __init__(self, phase: _Optional[_Union[Phase, str]] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trace: _Optional[_Union[TraceMetadata, _Mapping]] = ..., route_name: _Optional[str] = ...) -> None: ...

class TraceMetadata(_message.Message):
    __slots__ = ("trace_id", "span_id")
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    trace_id: str
    span_id: str
    def __init__(self, trace_id: _Optional[str] = ..., span_id: _Optional[str] = ...) -> None: ...

class SharedContext(_message.Message):
    __slots__ = ("project_id", "request_id", "metadata", "api_id", "api_name", "api_version", "api_kind", "api_context", "operation_path", "auth_context")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    API_ID_FIELD_NUMBER: _ClassVar[int]
    API_NAME_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    API_KIND_FIELD_NUMBER: _ClassVar[int]
    API_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    OPERATION_PATH_FIELD_NUMBER: _ClassVar[int]
    AUTH_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    request_id: str
    metadata: _struct_pb2.Struct
    api_id: str
    api_name: str
    api_version: str
    api_kind: str
    api_context: str
    operation_path: str
    auth_context: AuthContext
    def __init__(self, project_id: _Optional[str] = ..., request_id: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., api_id: _Optional[str] = ..., api_name: _Optional[str] = ..., api_version: _Optional[str] = ..., api_kind: _Optional[str] = ..., api_context: _Optional[str] = ..., operation_path: _Optional[str] = ..., auth_context: _Optional[_Union[AuthContext, _Mapping]] = ...) -> None: ...

class Headers(_message.Message):
    __slots__ = ("values",)
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: StringList
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[StringList, _Mapping]] = ...) -> None: ...
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.MessageMap[str, StringList]
    def __init__(self, values: _Optional[_Mapping[str, StringList]] = ...) -> None: ...

class StringList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class Body(_message.Message):
    __slots__ = ("content", "end_of_stream", "present")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    END_OF_STREAM_FIELD_NUMBER: _ClassVar[int]
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    content: bytes
    end_of_stream: bool
    present: bool
    def __init__(self, content: _Optional[bytes] = ..., end_of_stream: _Optional[bool] = ..., present: _Optional[bool] = ...) -> None: ...

class StreamBody(_message.Message):
    __slots__ = ("chunk", "end_of_stream", "index")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    END_OF_STREAM_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    end_of_stream: bool
    index: int
    def __init__(self, chunk: _Optional[bytes] = ..., end_of_stream: _Optional[bool] = ..., index: _Optional[int] = ...) -> None: ...

class DownstreamRequest(_message.Message):
    __slots__ = ("headers", "path", "method", "authority", "scheme")
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    AUTHORITY_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    headers: Headers
    path: str
    method: str
    authority: str
    scheme: str
    def __init__(self, headers: _Optional[_Union[Headers, _Mapping]] = ..., path: _Optional[str] = ..., method: _Optional[str] = ..., authority: _Optional[str] = ..., scheme: _Optional[str] = ...) -> None: ...

class DownstreamContext(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: DownstreamRequest
    def __init__(self, request: _Optional[_Union[DownstreamRequest, _Mapping]] = ...) -> None: ...

class UpstreamRequestContext(_message.Message):
    __slots__ = ("name", "url", "base_path")
    NAME_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    BASE_PATH_FIELD_NUMBER: _ClassVar[int]
    name: str
    url: str
    base_path: str
    def __init__(self, name: _Optional[str] = ..., url: _Optional[str] = ..., base_path: _Optional[str] = ...) -> None: ...

class UpstreamResponse(_message.Message):
    __slots__ = ("headers", "status_code")
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    headers: Headers
    status_code: int
    def __init__(self, headers: _Optional[_Union[Headers, _Mapping]] = ..., status_code: _Optional[int] = ...) -> None: ...

class UpstreamResponseContext(_message.Message):
    __slots__ = ("name", "url", "base_path", "response")
    NAME_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    BASE_PATH_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    name: str
    url: str
    base_path: str
    response: UpstreamResponse
    def __init__(self, name: _Optional[str] = ..., url: _Optional[str] = ..., base_path: _Optional[str] = ..., response: _Optional[_Union[UpstreamResponse, _Mapping]] = ...) -> None: ...

class AuthContext(_message.Message):
    __slots__ = ("authenticated", "authorized", "auth_type", "subject", "issuer", "audience", "scopes", "credential_id", "properties", "previous", "token_id", "typed_properties")
    class ScopesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bool
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bool] = ...) -> None: ...
    class PropertiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AUTHENTICATED_FIELD_NUMBER: _ClassVar[int]
    AUTHORIZED_FIELD_NUMBER: _ClassVar[int]
    AUTH_TYPE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    TYPED_PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    authenticated: bool
    authorized: bool
    auth_type: str
    subject: str
    issuer: str
    audience: _containers.RepeatedScalarFieldContainer[str]
    scopes: _containers.ScalarMap[str, bool]
    credential_id: str
    properties: _containers.ScalarMap[str, str]
    previous: AuthContext
    token_id: str
    typed_properties: _struct_pb2.Struct
    def __init__(self, authenticated: _Optional[bool] = ..., authorized: _Optional[bool] = ..., auth_type: _Optional[str] = ..., subject: _Optional[str] = ..., issuer: _Optional[str] = ..., audience: _Optional[_Iterable[str]] = ..., scopes: _Optional[_Mapping[str, bool]] = ..., credential_id: _Optional[str] = ..., properties: _Optional[_Mapping[str, str]] = ..., previous: _Optional[_Union[AuthContext, _Mapping]] = ..., token_id: _Optional[str] = ..., typed_properties: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class RequestHeaderContext(_message.Message):
    __slots__ = ("headers", "path", "method", "authority", "scheme", "vhost", "downstream", "upstream")
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    AUTHORITY_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    VHOST_FIELD_NUMBER: _ClassVar[int]
    DOWNSTREAM_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    headers: Headers
    path: str
    method: str
    authority: str
    scheme: str
    vhost: str
    downstream: DownstreamContext
    upstream: UpstreamRequestContext
    def __init__(self, headers: _Optional[_Union[Headers, _Mapping]] = ..., path: _Optional[str] = ..., method: _Optional[str] = ..., authority: _Optional[str] = ..., scheme: _Optional[str] = ..., vhost: _Optional[str] = ..., downstream: _Optional[_Union[DownstreamContext, _Mapping]] = ..., upstream: _Optional[_Union[UpstreamRequestContext, _Mapping]] = ...) -> None: ...

class RequestContext(_message.Message):
    __slots__ = ("headers", "body", "path", "method", "authority", "scheme", "vhost", "downstream", "upstream")
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    AUTHORITY_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    VHOST_FIELD_NUMBER: _ClassVar[int]
    DOWNSTREAM_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    headers: Headers
    body: Body
    path: str
    method: str
    authority: str
    scheme: str
    vhost: str
    downstream: DownstreamContext
    upstream: UpstreamRequestContext
    def __init__(self, headers: _Optional[_Union[Headers, _Mapping]] = ..., body: _Optional[_Union[Body, _Mapping]] = ..., path: _Optional[str] = ..., method: _Optional[str] = ..., authority: _Optional[str] = ..., scheme: _Optional[str] = ..., vhost: _Optional[str] = ..., downstream: _Optional[_Union[DownstreamContext, _Mapping]] = ..., upstream: _Optional[_Union[UpstreamRequestContext, _Mapping]] = ...) -> None: ...

class ResponseHeaderContext(_message.Message):
    __slots__ = ("request_headers", "request_body", "request_path", "request_method", "response_headers", "response_status", "downstream", "upstream")
    REQUEST_HEADERS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_BODY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_PATH_FIELD_NUMBER: _ClassVar[int]
    REQUEST_METHOD_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_HEADERS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_STATUS_FIELD_NUMBER: _ClassVar[int]
    DOWNSTREAM_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    request_headers: Headers
    request_body: Body
    request_path: str
    request_method: str
    response_headers: Headers
    response_status: int
    downstream: DownstreamContext
    upstream: UpstreamResponseContext
    def __init__(self, request_headers: _Optional[_Union[Headers, _Mapping]] = ..., request_body: _Optional[_Union[Body, _Mapping]] = ..., request_path: _Optional[str] = ..., request_method: _Optional[str] = ..., response_headers: _Optional[_Union[Headers, _Mapping]] = ..., response_status: _Optional[int] = ..., downstream: _Optional[_Union[DownstreamContext, _Mapping]] = ..., upstream: _Optional[_Union[UpstreamResponseContext, _Mapping]] = ...) -> None: ...

class ResponseContext(_message.Message):
    __slots__ = ("request_headers", "request_body", "request_path", "request_method", "response_headers", "response_body", "response_status", "downstream", "upstream")
    REQUEST_HEADERS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_BODY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_PATH_FIELD_NUMBER: _ClassVar[int]
    REQUEST_METHOD_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_HEADERS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_BODY_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_STATUS_FIELD_NUMBER: _ClassVar[int]
    DOWNSTREAM_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    request_headers: Headers
    request_body: Body
    request_path: str
    request_method: str
    response_headers: Headers
    response_body: Body
    response_status: int
    downstream: DownstreamContext
    upstream: UpstreamResponseContext
    def __init__(self, request_headers: _Optional[_Union[Headers, _Mapping]] = ..., request_body: _Optional[_Union[Body, _Mapping]] = ..., request_path: _Optional[str] = ..., request_method: _Optional[str] = ..., response_headers: _Optional[_Union[Headers, _Mapping]] = ..., response_body: _Optional[_Union[Body, _Mapping]] = ..., response_status: _Optional[int] = ..., downstream: _Optional[_Union[DownstreamContext, _Mapping]] = ..., upstream: _Optional[_Union[UpstreamResponseContext, _Mapping]] = ...) -> None: ...

class RequestStreamContext(_message.Message):
    __slots__ = ("headers", "path", "method", "authority", "scheme", "vhost", "downstream", "upstream")
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    AUTHORITY_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    VHOST_FIELD_NUMBER: _ClassVar[int]
    DOWNSTREAM_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    headers: Headers
    path: str
    method: str
    authority: str
    scheme: str
    vhost: str
    downstream: DownstreamContext
    upstream: UpstreamRequestContext
    def __init__(self, headers: _Optional[_Union[Headers, _Mapping]] = ..., path: _Optional[str] = ..., method: _Optional[str] = ..., authority: _Optional[str] = ..., scheme: _Optional[str] = ..., vhost: _Optional[str] = ..., downstream: _Optional[_Union[DownstreamContext, _Mapping]] = ..., upstream: _Optional[_Union[UpstreamRequestContext, _Mapping]] = ...) -> None: ...

class ResponseStreamContext(_message.Message):
    __slots__ = ("request_headers", "request_body", "request_path", "request_method", "response_headers", "response_status", "downstream", "upstream")
    REQUEST_HEADERS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_BODY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_PATH_FIELD_NUMBER: _ClassVar[int]
    REQUEST_METHOD_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_HEADERS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_STATUS_FIELD_NUMBER: _ClassVar[int]
    DOWNSTREAM_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    request_headers: Headers
    request_body: Body
    request_path: str
    request_method: str
    response_headers: Headers
    response_status: int
    downstream: DownstreamContext
    upstream: UpstreamResponseContext
    def __init__(self, request_headers: _Optional[_Union[Headers, _Mapping]] = ..., request_body: _Optional[_Union[Body, _Mapping]] = ..., request_path: _Optional[str] = ..., request_method: _Optional[str] = ..., response_headers: _Optional[_Union[Headers, _Mapping]] = ..., response_status: _Optional[int] = ..., downstream: _Optional[_Union[DownstreamContext, _Mapping]] = ..., upstream: _Optional[_Union[UpstreamResponseContext, _Mapping]] = ...) -> None: ...

class RequestHeadersPayload(_message.Message):
    __slots__ = ("context",)
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    context: RequestHeaderContext
    def __init__(self, context: _Optional[_Union[RequestHeaderContext, _Mapping]] = ...) -> None: ...

class RequestBodyPayload(_message.Message):
    __slots__ = ("context",)
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    context: RequestContext
    def __init__(self, context: _Optional[_Union[RequestContext, _Mapping]] = ...) -> None: ...

class ResponseHeadersPayload(_message.Message):
    __slots__ = ("context",)
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    context: ResponseHeaderContext
    def __init__(self, context: _Optional[_Union[ResponseHeaderContext, _Mapping]] = ...) -> None: ...

class ResponseBodyPayload(_message.Message):
    __slots__ = ("context",)
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    context: ResponseContext
    def __init__(self, context: _Optional[_Union[ResponseContext, _Mapping]] = ...) -> None: ...

class NeedsMoreRequestDataPayload(_message.Message):
    __slots__ = ("accumulated",)
    ACCUMULATED_FIELD_NUMBER: _ClassVar[int]
    accumulated: bytes
    def __init__(self, accumulated: _Optional[bytes] = ...) -> None: ...

class RequestChunkPayload(_message.Message):
    __slots__ = ("context", "chunk")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    context: RequestStreamContext
    chunk: StreamBody
    def __init__(self, context: _Optional[_Union[RequestStreamContext, _Mapping]] = ..., chunk: _Optional[_Union[StreamBody, _Mapping]] = ...) -> None: ...

class NeedsMoreResponseDataPayload(_message.Message):
    __slots__ = ("accumulated",)
    ACCUMULATED_FIELD_NUMBER: _ClassVar[int]
    accumulated: bytes
    def __init__(self, accumulated: _Optional[bytes] = ...) -> None: ...

class ResponseChunkPayload(_message.Message):
    __slots__ = ("context", "chunk")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    context: ResponseStreamContext
    chunk: StreamBody
    def __init__(self, context: _Optional[_Union[ResponseStreamContext, _Mapping]] = ..., chunk: _Optional[_Union[StreamBody, _Mapping]] = ...) -> None: ...

class CancelExecutionPayload(_message.Message):
    __slots__ = ("target_phase", "reason")
    TARGET_PHASE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    target_phase: Phase
    reason: str
    def __init__(self, target_phase: _Optional[_Union[Phase, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class PolicyMetadata(_message.Message):
    __slots__ = ("route_name", "api_id", "api_name", "api_version", "attached_to")
    ROUTE_NAME_FIELD_NUMBER: _ClassVar[int]
    API_ID_FIELD_NUMBER: _ClassVar[int]
    API_NAME_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    ATTACHED_TO_FIELD_NUMBER: _ClassVar[int]
    route_name: str
    api_id: str
    api_name: str
    api_version: str
    attached_to: str
    def __init__(self, route_name: _Optional[str] = ..., api_id: _Optional[str] = ..., api_name: _Optional[str] = ..., api_version: _Optional[str] = ..., attached_to: _Optional[str] = ...) -> None: ...

class DropHeaderAction(_message.Message):
    __slots__ = ("action", "headers")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    action: DropHeaderActionType
    headers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, action: _Optional[_Union[DropHeaderActionType, str]] = ..., headers: _Optional[_Iterable[str]] = ...) -> None: ...

class ImmediateResponse(_message.Message):
    __slots__ = ("status_code", "headers", "body", "analytics_metadata", "dynamic_metadata", "analytics_header_filter")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class DynamicMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Struct
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    ANALYTICS_METADATA_FIELD_NUMBER: _ClassVar[int]
    DYNAMIC_METADATA_FIELD_NUMBER: _ClassVar[int]
    ANALYTICS_HEADER_FILTER_FIELD_NUMBER: _ClassVar[int]
    status_code: int
    headers: _containers.ScalarMap[str, str]
    body: _wrappers_pb2.BytesValue
    analytics_metadata: _struct_pb2.Struct
    dynamic_metadata: _containers.MessageMap[str, _struct_pb2.Struct]
    analytics_header_filter: DropHeaderAction
    def __init__(self, status_code: _Optional[int] = ..., headers: _Optional[_Mapping[str, str]] = ..., body: _Optional[_Union[_wrappers_pb2.BytesValue, _Mapping]] = ..., analytics_metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., dynamic_metadata: _Optional[_Mapping[str, _struct_pb2.Struct]] = ..., analytics_header_filter: _Optional[_Union[DropHeaderAction, _Mapping]] = ...) -> None: ...

class UpstreamRequestHeaderModifications(_message.Message):
    __slots__ = ("headers_to_set", "headers_to_remove", "upstream_name", "path", "host", "method", "query_parameters_to_add", "query_parameters_to_remove", "analytics_metadata", "dynamic_metadata", "analytics_header_filter")
    class HeadersToSetEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class QueryParametersToAddEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: StringList
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[StringList, _Mapping]] = ...) -> None: ...
    class DynamicMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Struct
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
    HEADERS_TO_SET_FIELD_NUMBER: _ClassVar[int]
    HEADERS_TO_REMOVE_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    QUERY_PARAMETERS_TO_ADD_FIELD_NUMBER: _ClassVar[int]
    QUERY_PARAMETERS_TO_REMOVE_FIELD_NUMBER: _ClassVar[int]
    ANALYTICS_METADATA_FIELD_NUMBER: _ClassVar[int]
    DYNAMIC_METADATA_FIELD_NUMBER: _ClassVar[int]
    ANALYTICS_HEADER_FILTER_FIELD_NUMBER: _ClassVar[int]
    headers_to_set: _containers.ScalarMap[str, str]
    headers_to_remove: _containers.RepeatedScalarFieldContainer[str]
    upstream_name: _wrappers_pb2.StringValue
    path: _wrappers_pb2.StringValue
    host: _wrappers_pb2.StringValue
    method: _wrappers_pb2.StringValue
    query_parameters_to_add: _containers.MessageMap[str, StringList]
    query_parameters_to_remove: _containers.RepeatedScalarFieldContainer[str]
    analytics_metadata: _struct_pb2.Struct
    dynamic_metadata: _containers.MessageMap[str, _struct_pb2.Struct]
    analytics_header_filter: DropHeaderAction
    def __init__(self, headers_to_set: _Optional[_Mapping[str, str]] = ..., headers_to_remove: _Optional[_Iterable[str]] = ..., upstream_name: _Optional[_Union[_wrappers_pb2.StringValue, _Mapping]] = ..., path: _Optional[_Union[_wrappers_pb2.StringValue, _Mapping]] = ..., host: _Optional[_Union[_wrappers_pb2.StringValue, _Mapping]] = ..., method: _Optional[_Union[_wrappers_pb2.StringValue, _Mapping]] = ..., query_parameters_to_add: _Optional[_Mapping[str, StringList]] = ..., query_parameters_to_remove: _Optional[_Iterable[str]] = ..., analytics_metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., dynamic_metadata: _Optional[_Mapping[str, _struct_pb2.Struct]] = ..., analytics_header_filter: _Optional[_Union[DropHeaderAction, _Mapping]] = ...) -> None: ...

class UpstreamRequestModifications(_message.Message):
    __slots__ = ("body", "headers_to_set", "headers_to_remove", "upstream_name", "path", "host", "method", "query_parameters_to_add", "query_parameters_to_remove", "analytics_metadata", "dynamic_metadata", "analytics_header_filter")
    class HeadersToSetEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class QueryParametersToAddEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: StringList
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[StringList, _Mapping]] = ...) -> None: ...
    class DynamicMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Struct
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
    BODY_FIELD_NUMBER: _ClassVar[int]
    HEADERS_TO_SET_FIELD_NUMBER: _ClassVar[int]
    HEADERS_TO_REMOVE_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    QUERY_PARAMETERS_TO_ADD_FIELD_NUMBER: _ClassVar[int]
    QUERY_PARAMETERS_TO_REMOVE_FIELD_NUMBER: _ClassVar[int]
    ANALYTICS_METADATA_FIELD_NUMBER: _ClassVar[int]
    DYNAMIC_METADATA_FIELD_NUMBER: _ClassVar[int]
    ANALYTICS_HEADER_FILTER_FIELD_NUMBER: _ClassVar[int]
    body: _wrappers_pb2.BytesValue
    headers_to_set: _containers.ScalarMap[str, str]
    headers_to_remove: _containers.RepeatedScalarFieldContainer[str]
    upstream_name: _wrappers_pb2.StringValue
    path: _wrappers_pb2.StringValue
    host: _wrappers_pb2.StringValue
    method: _wrappers_pb2.StringValue
    query_parameters_to_add: _containers.MessageMap[str, StringList]
    query_parameters_to_remove: _containers.RepeatedScalarFieldContainer[str]
    analytics_metadata: _struct_pb2.Struct
    dynamic_metadata: _containers.MessageMap[str, _struct_pb2.Struct]
    analytics_header_filter: DropHeaderAction
    def __init__(self, body: _Optional[_Union[_wrappers_pb2.BytesValue, _Mapping]] = ..., headers_to_set: _Optional[_Mapping[str, str]] = ..., headers_to_remove: _Optional[_Iterable[str]] = ..., upstream_name: _Optional[_Union[_wrappers_pb2.StringValue, _Mapping]] = ..., path: _Optional[_Union[_wrappers_pb2.StringValue, _Mapping]] = ..., host: _Optional[_Union[_wrappers_pb2.StringValue, _Mapping]] = ..., method: _Optional[_Union[_wrappers_pb2.StringValue, _Mapping]] = ..., query_parameters_to_add: _Optional[_Mapping[str, StringList]] = ..., query_parameters_to_remove: _Optional[_Iterable[str]] = ..., analytics_metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., dynamic_metadata: _Optional[_Mapping[str, _struct_pb2.Struct]] = ..., analytics_header_filter: _Optional[_Union[DropHeaderAction, _Mapping]] = ...) -> None: ...

class DownstreamResponseHeaderModifications(_message.Message):
    __slots__ = ("headers_to_set", "headers_to_remove", "analytics_metadata", "dynamic_metadata", "analytics_header_filter")
    class HeadersToSetEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class DynamicMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Struct
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
    HEADERS_TO_SET_FIELD_NUMBER: _ClassVar[int]
    HEADERS_TO_REMOVE_FIELD_NUMBER: _ClassVar[int]
    ANALYTICS_METADATA_FIELD_NUMBER: _ClassVar[int]
    DYNAMIC_METADATA_FIELD_NUMBER: _ClassVar[int]
    ANALYTICS_HEADER_FILTER_FIELD_NUMBER: _ClassVar[int]
    headers_to_set: _containers.ScalarMap[str, str]
    headers_to_remove: _containers.RepeatedScalarFieldContainer[str]
    analytics_metadata: _struct_pb2.Struct
    dynamic_metadata: _containers.MessageMap[str, _struct_pb2.Struct]
    analytics_header_filter: DropHeaderAction
    def __init__(self, headers_to_set: _Optional[_Mapping[str, str]] = ..., headers_to_remove: _Optional[_Iterable[str]] = ..., analytics_metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., dynamic_metadata: _Optional[_Mapping[str, _struct_pb2.Struct]] = ..., analytics_header_filter: _Optional[_Union[DropHeaderAction, _Mapping]] = ...) -> None: ...

class DownstreamResponseModifications(_message.Message):
    __slots__ = ("body", "status_code", "headers_to_set", "headers_to_remove", "analytics_metadata", "dynamic_metadata", "analytics_header_filter")
    class HeadersToSetEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class DynamicMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Struct
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
    BODY_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    HEADERS_TO_SET_FIELD_NUMBER: _ClassVar[int]
    HEADERS_TO_REMOVE_FIELD_NUMBER: _ClassVar[int]
    ANALYTICS_METADATA_FIELD_NUMBER: _ClassVar[int]
    DYNAMIC_METADATA_FIELD_NUMBER: _ClassVar[int]
    ANALYTICS_HEADER_FILTER_FIELD_NUMBER: _ClassVar[int]
    body: _wrappers_pb2.BytesValue
    status_code: _wrappers_pb2.Int32Value
    headers_to_set: _containers.ScalarMap[str, str]
    headers_to_remove: _containers.RepeatedScalarFieldContainer[str]
    analytics_metadata: _struct_pb2.Struct
    dynamic_metadata: _containers.MessageMap[str, _struct_pb2.Struct]
    analytics_header_filter: DropHeaderAction
    def __init__(self, body: _Optional[_Union[_wrappers_pb2.BytesValue, _Mapping]] = ..., status_code: _Optional[_Union[_wrappers_pb2.Int32Value, _Mapping]] = ..., headers_to_set: _Optional[_Mapping[str, str]] = ..., headers_to_remove: _Optional[_Iterable[str]] = ..., analytics_metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., dynamic_metadata: _Optional[_Mapping[str, _struct_pb2.Struct]] = ..., analytics_header_filter: _Optional[_Union[DropHeaderAction, _Mapping]] = ...) -> None: ...

class ForwardRequestChunk(_message.Message):
    __slots__ = ("body", "analytics_metadata", "dynamic_metadata")
    class DynamicMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Struct
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
    BODY_FIELD_NUMBER: _ClassVar[int]
    ANALYTICS_METADATA_FIELD_NUMBER: _ClassVar[int]
    DYNAMIC_METADATA_FIELD_NUMBER: _ClassVar[int]
    body: _wrappers_pb2.BytesValue
    analytics_metadata: _struct_pb2.Struct
    dynamic_metadata: _containers.MessageMap[str, _struct_pb2.Struct]
    def __init__(self, body: _Optional[_Union[_wrappers_pb2.BytesValue, _Mapping]] = ..., analytics_metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., dynamic_metadata: _Optional[_Mapping[str, _struct_pb2.Struct]] = ...) -> None: ...

class ForwardResponseChunk(_message.Message):
    __slots__ = ("body", "analytics_metadata", "dynamic_metadata")
    class DynamicMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Struct
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
    BODY_FIELD_NUMBER: _ClassVar[int]
    ANALYTICS_METADATA_FIELD_NUMBER: _ClassVar[int]
    DYNAMIC_METADATA_FIELD_NUMBER: _ClassVar[int]
    body: _wrappers_pb2.BytesValue
    analytics_metadata: _struct_pb2.Struct
    dynamic_metadata: _containers.MessageMap[str, _struct_pb2.Struct]
    def __init__(self, body: _Optional[_Union[_wrappers_pb2.BytesValue, _Mapping]] = ..., analytics_metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., dynamic_metadata: _Optional[_Mapping[str, _struct_pb2.Struct]] = ...) -> None: ...

class TerminateResponseChunk(_message.Message):
    __slots__ = ("body", "analytics_metadata", "dynamic_metadata")
    class DynamicMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Struct
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
    BODY_FIELD_NUMBER: _ClassVar[int]
    ANALYTICS_METADATA_FIELD_NUMBER: _ClassVar[int]
    DYNAMIC_METADATA_FIELD_NUMBER: _ClassVar[int]
    body: _wrappers_pb2.BytesValue
    analytics_metadata: _struct_pb2.Struct
    dynamic_metadata: _containers.MessageMap[str, _struct_pb2.Struct]
    def __init__(self, body: _Optional[_Union[_wrappers_pb2.BytesValue, _Mapping]] = ..., analytics_metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., dynamic_metadata: _Optional[_Mapping[str, _struct_pb2.Struct]] = ...) -> None: ...

class RequestHeaderActionPayload(_message.Message):
    __slots__ = ("upstream_request_header_modifications", "immediate_response")
    UPSTREAM_REQUEST_HEADER_MODIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    IMMEDIATE_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    upstream_request_header_modifications: UpstreamRequestHeaderModifications
    immediate_response: ImmediateResponse
    def __init__(self, upstream_request_header_modifications: _Optional[_Union[UpstreamRequestHeaderModifications, _Mapping]] = ..., immediate_response: _Optional[_Union[ImmediateResponse, _Mapping]] = ...) -> None: ...

class RequestActionPayload(_message.Message):
    __slots__ = ("upstream_request_modifications", "immediate_response")
    UPSTREAM_REQUEST_MODIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    IMMEDIATE_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    upstream_request_modifications: UpstreamRequestModifications
    immediate_response: ImmediateResponse
    def __init__(self, upstream_request_modifications: _Optional[_Union[UpstreamRequestModifications, _Mapping]] = ..., immediate_response: _Optional[_Union[ImmediateResponse, _Mapping]] = ...) -> None: ...

class ResponseHeaderActionPayload(_message.Message):
    __slots__ = ("downstream_response_header_modifications", "immediate_response")
    DOWNSTREAM_RESPONSE_HEADER_MODIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    IMMEDIATE_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    downstream_response_header_modifications: DownstreamResponseHeaderModifications
    immediate_response: ImmediateResponse
    def __init__(self, downstream_response_header_modifications: _Optional[_Union[DownstreamResponseHeaderModifications, _Mapping]] = ..., immediate_response: _Optional[_Union[ImmediateResponse, _Mapping]] = ...) -> None: ...

class ResponseActionPayload(_message.Message):
    __slots__ = ("downstream_response_modifications", "immediate_response")
    DOWNSTREAM_RESPONSE_MODIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    IMMEDIATE_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    downstream_response_modifications: DownstreamResponseModifications
    immediate_response: ImmediateResponse
    def __init__(self, downstream_response_modifications: _Optional[_Union[DownstreamResponseModifications, _Mapping]] = ..., immediate_response: _Optional[_Union[ImmediateResponse, _Mapping]] = ...) -> None: ...

class NeedsMoreDecisionPayload(_message.Message):
    __slots__ = ("needs_more",)
    NEEDS_MORE_FIELD_NUMBER: _ClassVar[int]
    needs_more: bool
    def __init__(self, needs_more: _Optional[bool] = ...) -> None: ...

class StreamingRequestActionPayload(_message.Message):
    __slots__ = ("forward_request_chunk",)
    FORWARD_REQUEST_CHUNK_FIELD_NUMBER: _ClassVar[int]
    forward_request_chunk: ForwardRequestChunk
    def __init__(self, forward_request_chunk: _Optional[_Union[ForwardRequestChunk, _Mapping]] = ...) -> None: ...

class StreamingResponseActionPayload(_message.Message):
    __slots__ = ("forward_response_chunk", "terminate_response_chunk")
    FORWARD_RESPONSE_CHUNK_FIELD_NUMBER: _ClassVar[int]
    TERMINATE_RESPONSE_CHUNK_FIELD_NUMBER: _ClassVar[int]
    forward_response_chunk: ForwardResponseChunk
    terminate_response_chunk: TerminateResponseChunk
    def __init__(self, forward_response_chunk: _Optional[_Union[ForwardResponseChunk, _Mapping]] = ..., terminate_response_chunk: _Optional[_Union[TerminateResponseChunk, _Mapping]] = ...) -> None: ...

class ExecutionError(_message.Message):
    __slots__ = ("message", "policy_name", "policy_version", "error_type")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    POLICY_NAME_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    message: str
    policy_name: str
    policy_version: str
    error_type: str
    def __init__(self, message: _Optional[str] = ..., policy_name: _Optional[str] = ..., policy_version: _Optional[str] = ..., error_type: _Optional[str] = ...) -> None: ...

class HealthCheckRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthCheckResponse(_message.Message):
    __slots__ = ("ready", "loaded_policies", "reason", "policies", "protections_off")
    READY_FIELD_NUMBER: _ClassVar[int]
    LOADED_POLICIES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    PROTECTIONS_OFF_FIELD_NUMBER: _ClassVar[int]
    ready: bool
    loaded_policies: int
    reason: str
    policies: _containers.RepeatedCompositeFieldContainer[PolicyStatus]
    protections_off: _containers.RepeatedCompositeFieldContainer[ProtectionOff]
    def __init__(self, ready: _Optional[bool] = ..., loaded_policies: _Optional[int] = ..., reason: _Optional[str] = ..., policies: _Optional[_Iterable[_Union[PolicyStatus, _Mapping]]] = ..., protections_off: _Optional[_Iterable[_Union[ProtectionOff, _Mapping]]] = ...) -> None: ...

class PolicyStatus(_message.Message):
    __slots__ = ("name", "version", "ready", "python_version", "reason", "quarantined", "isolation", "workers", "distributions", "probation", "quarantines")
    class DistributionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    QUARANTINED_FIELD_NUMBER: _ClassVar[int]
    ISOLATION_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    DISTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    PROBATION_FIELD_NUMBER: _ClassVar[int]
    QUARANTINES_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    ready: bool
    python_version: str
    reason: str
    quarantined: bool
    isolation: str
    workers: int
    distributions: _containers.ScalarMap[str, str]
    probation: bool
    quarantines: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., ready: _Optional[bool] = ..., python_version: _Optional[str] = ..., reason: _Optional[str] = ..., quarantined: _Optional[bool] = ..., isolation: _Optional[str] = ..., workers: _Optional[int] = ..., distributions: _Optional[_Mapping[str, str]] = ..., probation: _Optional[bool] = ..., quarantines: _Optional[int] = ...) -> None: ...

class ProtectionOff(_message.Message):
    __slots__ = ("name", "detail", "policy")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    name: str
    detail: str
    policy: str
    def __init__(self, name: _Optional[str] = ..., detail: _Optional[str] = ..., policy: _Optional[str] = ...) -> None: ...
