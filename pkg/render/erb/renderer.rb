# kpaas ERB renderer: renders BOSH job templates the way the BOSH director does
# (bosh-template's EvaluationContext, the director's SourceErb).
#
# Serve mode (the only mode): one request per line on stdin, one reply per line
# on a private copy of stdout. fd 1 itself points at stderr and fd 0 at
# /dev/null, so whatever a template prints or reads cannot corrupt the protocol.
#   request: {"id":N,"name":"config/x.erb","source":"<base64>","context":{spec hash}}
#   reply:   {"id":N,"ok":true,"output":"<base64>"}
#            {"id":N,"ok":false,"error":"Error filling in template '...' (line L: msg)","line":L}

$kpaas_reply = IO.new(STDOUT.fileno, 'w', autoclose: false).dup
$kpaas_requests = IO.new(STDIN.fileno, 'r', autoclose: false).dup
STDOUT.reopen(STDERR)
STDIN.reopen(File::NULL) # a template that reads stdin reads nothing, not the next request
$stdout = STDOUT
$kpaas_reply.sync = true
Encoding.default_external = Encoding::UTF_8
Encoding.default_internal = nil

require 'erb'
require 'json'
require 'yaml'
require 'ostruct'
require 'shellwords'
require 'set'

# What the director process has loaded already: templates use these without require.
autoload :IPAddr, 'ipaddr'
autoload :OpenSSL, 'openssl'
autoload :Base64, 'base64'
autoload :Digest, 'digest'
autoload :Zlib, 'zlib'
autoload :StringIO, 'stringio'
autoload :URI, 'uri'
autoload :Date, 'date'
autoload :DateTime, 'date'
autoload :SecureRandom, 'securerandom'
autoload :Pathname, 'pathname'
autoload :CGI, 'cgi'
autoload :Time, 'time'

# ActiveSupport's blank? family (the director loads active_support/core_ext/object/blank).
unless Object.method_defined?(:blank?)
  class Object
    def blank?; respond_to?(:empty?) ? !!empty? : !self; end
    def present?; !blank?; end
    def presence; self if present?; end
  end
  class NilClass; def blank?; true; end; end
  class FalseClass; def blank?; true; end; end
  class TrueClass; def blank?; false; end; end
  class Numeric; def blank?; false; end; end
  class String
    def blank?; empty? || /\A[[:space:]]*\z/.match?(self); end
  end
end

module KpaasBosh
  # Property and spec structs: OpenStructs (as the director's) whose inspect
  # shows names only, so error messages never carry property values.
  class Struct < OpenStruct
    # OpenStruct 0.5 defines two singleton methods per key up front, which
    # made building `spec` most of a render's cost. Its method_missing reads
    # the table anyway, so only keys that shadow a public method get theirs.
    def initialize(hash = nil)
      @table = {}
      hash&.each_pair do |k, v|
        k = k.to_sym
        new_ostruct_member!(k) if respond_to?(k)
        @table[k] = v
      end
    end

    # methods(false) lists the keys, as OpenStruct's singleton methods do.
    def methods(regular = true)
      return super if regular
      super(false) | @table.keys.flat_map { |k| [k, :"#{k}="] }
    end

    def inspect; "#<struct #{each_pair.map { |k, _| k }.join(', ')}>"; end
    alias to_s inspect
  end

  def self.openstruct(object)
    case object
    when Hash
      mapped = object.each_with_object({}) { |(k, v), h| h[k] = openstruct(v) }
      Struct.new(mapped)
    when Array
      object.map { |item| openstruct(item) }
    else
      object
    end
  end

  class UnknownProperty < StandardError
    attr_reader :name
    def initialize(names)
      @names = names
      super("Can't find property '#{names}'")
    end
  end

  class UnknownLink < StandardError
    def initialize(name)
      super("Can't find link '#{name}'")
    end
  end

  module PropertyHelper
    def copy_property(dst, src, name, default = nil)
      keys = name.split('.')
      src_ref = src
      dst_ref = dst
      keys.each do |key|
        src_ref = src_ref[key]
        break if src_ref.nil?
      end
      keys[0..-2].each do |key|
        dst_ref[key] ||= {}
        dst_ref = dst_ref[key]
      end
      dst_ref[keys[-1]] ||= {}
      dst_ref[keys[-1]] = src_ref.nil? ? default : src_ref
    end

    def lookup_property(collection, name)
      return nil if collection.nil?
      keys = name.split('.')
      ref = collection
      keys.each do |key|
        ref = ref[key]
        return nil if ref.nil?
      end
      ref
    end
  end

  class ActiveElseBlock
    def initialize(template)
      @context = template
    end

    def else
      yield
    end

    def else_if_p(*names, &block)
      @context.if_p(*names, &block)
    end

    def else_if_link(name, &block)
      @context.if_link(name, &block)
    end
  end

  class InactiveElseBlock
    def else; end

    def else_if_p(*_names)
      InactiveElseBlock.new
    end

    def else_if_link(_name)
      InactiveElseBlock.new
    end
  end

  class EvaluationLinkInstance
    include PropertyHelper
    attr_reader :name, :index, :id, :az, :address, :properties, :bootstrap

    def initialize(name, index, id, az, address, properties, bootstrap)
      @name = name
      @index = index
      @id = id
      @az = az
      @address = address
      @properties = properties
      @bootstrap = bootstrap
    end

    def inspect; "#<link instance #{@name}/#{@index}>"; end
    alias to_s inspect

    def p(*args)
      names = Array(args[0])
      names.each do |name|
        result = lookup_property(@properties, name)
        return result unless result.nil?
      end
      return args[1] if args.length == 2
      raise UnknownProperty.new(names)
    end

    def if_p(*names)
      values = names.map do |name|
        value = lookup_property(@properties, name)
        return ActiveElseBlock.new(self) if value.nil?
        value
      end
      yield(*values)
      InactiveElseBlock.new
    end
  end

  class EvaluationLink
    include PropertyHelper
    attr_reader :instances, :properties, :instance_group, :default_network, :deployment_name, :domain, :group_name

    def initialize(spec)
      @properties = spec['properties'] || {}
      @instances = (spec['instances'] || []).map do |i|
        EvaluationLinkInstance.new(i['name'], i['index'], i['id'], i['az'], i['address'], @properties, i['bootstrap'])
      end
      @instance_group = spec['instance_group']
      @default_network = spec['default_network']
      @deployment_name = spec['deployment_name']
      @domain = spec['domain']
      @group_name = spec['group_name']
      @address = spec['address']
      @addresses = spec['addresses'] || {}
    end

    def inspect; "#<link #{@group_name}>"; end
    alias to_s inspect

    def p(*args)
      names = Array(args[0])
      names.each do |name|
        result = lookup_property(@properties, name)
        return result unless result.nil?
      end
      return args[1] if args.length == 2
      raise UnknownProperty.new(names)
    end

    def if_p(*names)
      values = names.map do |name|
        value = lookup_property(@properties, name)
        return ActiveElseBlock.new(self) if value.nil?
        value
      end
      yield(*values)
      InactiveElseBlock.new
    end

    # address: the link's address (a manual link's address, or the group's
    # bosh-dns query name). With criteria, the address kpaas computed for
    # them when it has one ("azs=z1,z2;status=healthy"), else the plain one.
    def address(criteria = {})
      return @address if criteria.nil? || criteria.empty?
      key = criteria.map { |k, v| "#{k}=#{Array(v).join(',')}" }.sort.join(';')
      @addresses.fetch(key, @address)
    end
  end

  class EvaluationContext
    include PropertyHelper
    attr_reader :name, :index, :raw_properties

    def initialize(spec)
      @name = spec['job']['name'] if spec['job'].is_a?(Hash)
      @index = spec['index']
      properties = {}
      spec['properties'].each_pair { |k, v| properties[k] = v } if spec['properties'].is_a?(Hash)
      @raw_properties = properties
      @raw_spec = spec
      @links = spec['links'] || {}
    end

    # The director builds these OpenStructs up front; building them on first
    # use looks the same to templates and saves most of a render's cost.
    def spec
      @spec ||= KpaasBosh.openstruct(@raw_spec)
    end

    def properties
      @properties ||= KpaasBosh.openstruct(@raw_properties)
    end

    def inspect; '#<template context>'; end
    alias to_s inspect

    # A binding with no local variables whose `def`s define singleton methods
    # of this context only (instance_eval), so helpers do not leak into the
    # next template.
    def get_binding
      instance_eval { binding }
    end

    def p(*args)
      names = Array(args[0])
      names.each do |name|
        result = lookup_property(@raw_properties, name)
        return result unless result.nil?
      end
      return args[1] if args.length == 2
      raise UnknownProperty.new(names)
    end

    def if_p(*names)
      values = names.map do |name|
        value = lookup_property(@raw_properties, name)
        return ActiveElseBlock.new(self) if value.nil?
        value
      end
      yield(*values)
      InactiveElseBlock.new
    end

    def link(name)
      link_spec = lookup_property(@links, name)
      raise UnknownLink.new(name) if link_spec.nil? || !link_spec.key?('instances')
      EvaluationLink.new(link_spec)
    end

    def if_link(name)
      link_spec = lookup_property(@links, name)
      if link_spec.nil? || !link_spec.key?('instances')
        ActiveElseBlock.new(self)
      else
        yield link(name)
        InactiveElseBlock.new
      end
    end
  end

  # The text of an error, with no property values: NameError messages carry
  # the receiver's inspect (a String property's value), so they are rebuilt from
  # the receiver's class; other library errors have any string value of the
  # context cut out. raise/abort messages are the template author's own words.
  def self.safe_message(e, secrets)
    msg = e.message.to_s
    if e.is_a?(NameError) && !e.is_a?(UnknownProperty)
      begin
        recv = e.receiver
        kind = e.is_a?(NoMethodError) ? 'undefined method' : 'undefined local variable or method'
        return "#{kind} `#{e.name}' for #{recv.nil? ? 'nil' : "an instance of #{recv.class}"}"
      rescue ArgumentError
        # no receiver recorded: fall through to redaction
      end
    end
    return msg if e.instance_of?(RuntimeError) || e.is_a?(SystemExit) || e.is_a?(UnknownProperty) || e.is_a?(UnknownLink)
    secrets.each { |s| msg = msg.gsub(s, '[redacted]') }
    msg
  end

  def self.strings(value, out)
    case value
    when Hash then value.each_value { |v| strings(v, out) }
    when Array then value.each { |v| strings(v, out) }
    when String then out << value if value.length >= 4
    end
    out
  end

  def self.render(name, source, spec)
    context = EvaluationContext.new(spec)
    erb = ERB.new(source, trim_mode: '-')
    erb.filename = name
    [erb.result(context.get_binding), nil, nil]
  rescue Exception => e # rubocop:disable Lint/RescueException -- abort is a SystemExit, syntax errors are ScriptErrors
    raise if e.is_a?(Interrupt) || e.is_a?(SignalException)
    line = nil
    if e.is_a?(SyntaxError)
      m = e.message.match(/^#{Regexp.escape(name)}:(\d+)/)
      line = m[1].to_i if m
    end
    if line.nil?
      loc = (e.backtrace || []).find { |l| l.start_with?("#{name}:") }
      line = loc[name.length + 1..].to_i if loc
    end
    msg = safe_message(e, strings(spec['properties'], []) + strings(spec['links'], []))
    msg = msg.lines.first.to_s.chomp if e.is_a?(SyntaxError) && msg.lines.size > 3
    [nil, "Error filling in template '#{name}' (line #{line || '(unknown)'}: #{msg})", line]
  end
end

def kpaas_serve
  while (req = $kpaas_requests.gets)
    id = nil
    begin
      r = JSON.parse(req, allow_nan: true)
      id = r['id']
      source = r['source'].unpack1('m0').force_encoding(Encoding::UTF_8)
      out, err, line = KpaasBosh.render(r['name'], source, r['context'])
      reply = if err
                { 'id' => id, 'ok' => false, 'error' => err.scrub, 'line' => line }
              else
                { 'id' => id, 'ok' => true, 'output' => [out.to_s].pack('m0') }
              end
    rescue StandardError => e
      reply = { 'id' => id, 'ok' => false, 'error' => "renderer: #{e.class}: #{e.message.to_s[0, 200].scrub}" }
    end
    $kpaas_reply.write(JSON.generate(reply), "\n")
  end
end

kpaas_serve
